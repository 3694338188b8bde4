import type { IncomingMessage, ServerResponse } from "node:http";
import { errors } from "../errors";
import { loggerOf } from "./res-logger";
import { errorPayload } from "./error-shape";

type Res = ServerResponse & { flush?: () => void };

/** The least a refused body may send past the decision before the connection is cut. */
const MIN_DRAIN_BYTES = 1024 * 1024;
/** Like nginx's lingering close: no more than this in all, and no more than IDLE between reads. */
const DRAIN_TIME_MS = 30_000;
const DRAIN_IDLE_MS = 5_000;
/** How long a cut connection stays half-closed before it is destroyed. */
const LINGER_MS = 1_000;
const noop = () => {};

/** How many bytes of a refused body are read and thrown away before the connection is cut. */
export function drainCap(limit: number): number {
  return Math.max(4 * limit, MIN_DRAIN_BYTES);
}

/**
 * Answers 413 at once, then reads and discards the rest of the body before closing. Closing with
 * unread bytes makes the kernel send a reset, which can wipe out the answer before the client reads
 * it (fetch rejects with EPIPE, a buffering proxy answers 502). Past drainCap(limit) bytes, or the
 * time limits, the connection is cut: a client cannot make the server read forever.
 */
export function refuseBody(req: IncomingMessage, res: Res, limit: number): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (res.destroyed) return;
  const text = JSON.stringify(errorPayload(res, errors.payloadTooLarge(limit)).body);
  res.writeHead(413, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    connection: "close",
  });
  if (req.complete) {
    res.end(text);
    return;
  }
  res.write(text);
  res.flush?.();
  discardBody(req, res, drainCap(limit)).then((complete) => {
    if (complete) res.end();
    else cutSoon(req, res);
  });
}

/**
 * Stops reading and sends FIN after the answer, then closes a little later: the reset that closing
 * with unread bytes sends could otherwise wipe out the 413 before a busy client has read it.
 */
function cutSoon(req: IncomingMessage, res: Res) {
  if (res.destroyed) return;
  req.pause();
  req.socket.end();
  setTimeout(() => res.destroy(), LINGER_MS).unref();
}

/** Reads and drops the rest of `req`; true once it ended, false when over a bound or gone. */
function discardBody(req: IncomingMessage, res: Res, cap: number): Promise<boolean> {
  return new Promise((resolve) => {
    let left = cap;
    const finish = (complete: boolean) => {
      clearTimeout(overall);
      clearTimeout(idle);
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("close", onGone);
      res.off("close", onGone);
      resolve(complete);
    };
    const cut = (why: string) => () => {
      loggerOf(res).debug(`closing the connection of a refused upload: ${why}`);
      finish(false);
    };
    const overall = setTimeout(cut(`still sending after ${DRAIN_TIME_MS} ms`), DRAIN_TIME_MS).unref();
    const idle = setTimeout(cut(`idle for ${DRAIN_IDLE_MS} ms`), DRAIN_IDLE_MS).unref();
    const onData = (chunk: Buffer) => {
      left -= chunk.byteLength;
      if (left < 0) cut(`more than ${cap} bytes past the limit`)();
      else idle.refresh();
    };
    const onEnd = () => finish(true);
    const onGone = () => finish(false);
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("close", onGone);
    res.on("close", onGone);
    // An error always comes with 'close'; this listener only keeps it from being unhandled.
    req.on("error", noop);
    req.resume();
  });
}
