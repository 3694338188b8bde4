import type { IncomingMessage, ServerResponse } from "node:http";
import { isUint8Array } from "node:util/types";
import { ActorError } from "../errors";
import { loggerOf } from "./res-logger";
import { errorPayload } from "./error-shape";

type Res = ServerResponse & { flush?: () => void };
type ReadResult = ReadableStreamReadResult<Uint8Array>;

const PENDING = Symbol("pending");
const STATUS_TEXT = /^[\t\x20-\x7e\x80-\xff]*$/;
/** Reads that settle before the next macrotask count as "already there" (a known-length body). */
const EAGER_READS = 4;
const noop = () => {};
const FETCH_DECODES = new Set(["gzip", "x-gzip", "deflate", "br"]);
const EVENT_STREAM = /^\s*text\/event-stream\s*(?:;|$)/i;

/** Writes a library error as a JSON body (SPEC §5, or the route's shape); anything unexpected is logged, never shown. */
export function sendError(res: Res, err: unknown) {
  if (!(err instanceof ActorError)) loggerOf(res).error({ err }, "unexpected error");
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (res.destroyed) return;
  const { status, body } = errorPayload(res, err);
  const text = JSON.stringify(body);
  const headers: Record<string, string | number> = { "content-type": "application/json", "content-length": Buffer.byteLength(text) };
  if (err instanceof ActorError && err.retryAfter !== undefined) headers["retry-after"] = String(err.retryAfter);
  res.writeHead(status, headers);
  res.end(text);
}

/** How a registry shutdown reaches the responses still streaming (RegistryCore implements it). */
export interface StreamShutdown {
  /** Runs `fn` when shutdown begins, or now if it has; returns what unregisters it. */
  atShutdown(fn: () => void): () => void;
  /** Runs `fn` at the shutdown deadline, or now if it has passed; returns what unregisters it. */
  atDeadline(fn: () => void): () => void;
}

/**
 * Writes a W3C Response to Node's ServerResponse; resolves once the body is fully sent (handed to
 * the OS, so a process may exit) or abandoned.
 */
export async function sendResponse(
  req: IncomingMessage,
  res: Res,
  response: Response,
  shutdown?: StreamShutdown,
): Promise<void> {
  const body = response.body;
  if (res.destroyed || res.writableEnded) {
    body?.cancel().catch(noop);
    return;
  }
  const status = response.status;
  const headers = headersFor(response, res);
  const statusText = STATUS_TEXT.test(response.statusText) ? response.statusText : "";
  const noBody = status === 204 || status === 205 || status === 304;

  if (!body || noBody) {
    body?.cancel().catch(noop);
    if (!noBody && !("content-length" in headers) && !("transfer-encoding" in headers)) headers["content-length"] = "0";
    writeHead(res, status, statusText, headers);
    res.end();
    return;
  }

  const known = bufferedSource(response);
  if (known !== undefined) {
    if (!("content-length" in headers) && !("transfer-encoding" in headers)) {
      headers["content-length"] = String(typeof known === "string" ? Buffer.byteLength(known) : known.byteLength);
    }
    writeHead(res, status, statusText, headers);
    if (req.method === "HEAD") res.end();
    else res.end(known);
    return;
  }

  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let pending: Promise<ReadResult> | undefined;
  let complete = false;
  try {
    for (let i = 0; i < EAGER_READS; i++) {
      const read = reader.read();
      const result = await Promise.race([read, nextMacrotask()]);
      if (result === PENDING) {
        pending = read;
        break;
      }
      if (result.done) {
        complete = true;
        break;
      }
      chunks.push(checkChunk(result.value));
    }
  } catch (err) {
    // Nothing is sent yet: ours (413 for an echoed request body, a UserError) go to the caller to answer.
    if (err instanceof ActorError) throw err;
    loggerOf(res).error({ err }, "the response body failed before anything was sent");
    sendError(res, new ActorError(500, "internal_error", "Internal error"));
    return;
  }

  if (req.method === "HEAD") {
    if (complete && !("content-length" in headers)) headers["content-length"] = String(byteLength(chunks));
    reader.cancel().catch(noop);
    writeHead(res, status, statusText, headers);
    res.end();
    return;
  }

  if (complete) {
    if (!("content-length" in headers) && !("transfer-encoding" in headers)) {
      headers["content-length"] = String(byteLength(chunks));
    }
    writeHead(res, status, statusText, headers);
    if (chunks.length === 1) res.end(chunks[0]);
    else {
      for (const chunk of chunks) res.write(chunk);
      res.end();
    }
    return;
  }

  writeHead(res, status, statusText, headers);
  res.flushHeaders();
  await pump(res, reader, chunks, pending, EVENT_STREAM.test(String(headers["content-type"] ?? "")), shutdown);
}

/** Streams the rest of the body with backpressure, flushing each chunk (SSE through compression()). */
async function pump(
  res: Res,
  reader: ReadableStreamDefaultReader<Uint8Array>,
  first: Uint8Array[],
  pending: Promise<ReadResult> | undefined,
  eventStream: boolean,
  shutdown: StreamShutdown | undefined,
) {
  let gone = false;
  const quit = (why: string) => {
    gone = true;
    reader.cancel(new DOMException(why, "AbortError")).catch(noop);
  };
  const onClose = () => {
    if (res.writableFinished || gone) return;
    quit("The client went away");
  };
  // An event stream never ends by itself: it ends cleanly when shutdown begins. Any other stream
  // is finite, and a clean end would pass a truncated body off as whole: it may finish within the
  // grace period, past which the connection is destroyed so the client sees the truncation.
  const stop = () => {
    if (gone) return;
    quit("The registry is shutting down");
    res.end();
  };
  const cut = () => {
    if (gone) return;
    loggerOf(res).warn("a streamed response was still running at the shutdown deadline; closing its connection");
    quit("The registry is shutting down");
    res.destroy();
  };
  let unregister = noop;
  res.once("close", onClose);
  if (res.destroyed) onClose();
  try {
    for (const chunk of first) res.write(chunk);
    if (first.length) res.flush?.();
    if (shutdown) unregister = eventStream ? shutdown.atShutdown(stop) : shutdown.atDeadline(cut);
    for (;;) {
      const { done, value } = await (pending ?? reader.read());
      pending = undefined;
      if (gone) return;
      if (done) {
        res.end();
        await finishOrClose(res);
        return;
      }
      const ok = res.write(checkChunk(value));
      res.flush?.();
      if (!ok) await drainOrClose(res);
      if (gone) return;
    }
  } catch (err) {
    if (!gone) {
      // An ActorError here is the client's doing (an echoed body over maxBodySize), not a server fault.
      const logger = loggerOf(res);
      const message = "the response body stream failed mid-way; closing the connection";
      if (err instanceof ActorError) logger.warn({ err }, message);
      else logger.error({ err }, message);
      res.destroy();
    }
  } finally {
    res.off("close", onClose);
    unregister();
  }
}

const drainOrClose = (res: Res) => either(res, "drain");
const finishOrClose = (res: Res) => (res.writableFinished ? Promise.resolve() : either(res, "finish"));

/** Resolves on `event` or on 'close', whichever comes first. */
function either(res: Res, event: "drain" | "finish"): Promise<void> {
  if (res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off(event, done);
      res.off("close", done);
      resolve();
    };
    res.on(event, done);
    res.on("close", done);
  });
}

/** A Response body must yield bytes, as fetch() requires; anything else would corrupt the wire. */
function checkChunk(chunk: unknown): Uint8Array {
  if (isUint8Array(chunk)) return chunk;
  const what = typeof chunk === "string" ? "a string" : typeof chunk;
  throw new TypeError(`the response body stream yielded ${what}, not a Uint8Array (encode text with TextEncoder)`);
}

/** undici keeps a Response's original string or bytes beside its body stream (its `state` slot). */
const STATE = Object.getOwnPropertySymbols(new Response(null)).find((symbol) => symbol.description === "state");

/**
 * The body of `new Response(string | bytes)` and `Response.json()`, read without going through
 * its stream: no reader, no promise per chunk. Anything else (a stream, a Blob, a body already
 * read or locked, another fetch implementation) takes the stream path.
 */
function bufferedSource(response: Response): string | Uint8Array | undefined {
  if (STATE === undefined || response.bodyUsed) return undefined;
  const body = (response as unknown as Record<symbol, { body?: { source?: unknown; stream?: ReadableStream } } | undefined>)[STATE]?.body;
  const source = body?.source;
  if (body?.stream?.locked) return undefined;
  if (typeof source === "string" || isUint8Array(source)) return source;
  return undefined;
}

function nextMacrotask(): Promise<typeof PENDING> {
  return new Promise((resolve) => setImmediate(resolve, PENDING));
}

function byteLength(chunks: Uint8Array[]): number {
  let total = 0;
  for (const chunk of chunks) total += chunk.byteLength;
  return total;
}

/** A header object Node accepts as is; Set-Cookie stays a list and adds to cookies set by earlier middleware. */
function headersFor(response: Response, res: ServerResponse): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const decoded = decodedByFetch(response);
  response.headers.forEach((value, name) => {
    if (name === "set-cookie") return;
    if (decoded && (name === "content-encoding" || name === "content-length")) return;
    out[name] = value;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) {
    const earlier = res.getHeader("set-cookie");
    out["set-cookie"] = earlier === undefined ? cookies : [...([] as unknown[]).concat(earlier).map(String), ...cookies];
  }
  // Vary adds up too: the `cors` option's "Vary: Origin" must survive an actor's own Vary.
  const earlierVary = res.getHeader("vary");
  if (out.vary !== undefined && earlierVary !== undefined) out.vary = `${([] as unknown[]).concat(earlierVary).join(", ")}, ${out.vary}`;
  return out;
}

/**
 * fetch() hands back the body already decoded but keeps the upstream's content-encoding and
 * content-length; passed on as is, a client would try to inflate plain bytes. Mirrors which
 * codings undici decodes (all of them known, else none).
 */
function decodedByFetch(response: Response): boolean {
  if (response.type === "default" || !response.body) return false;
  const coding = response.headers.get("content-encoding");
  return coding !== null && coding.toLowerCase().split(",").every((c) => FETCH_DECODES.has(c.trim()));
}

function writeHead(res: Res, status: number, statusText: string, headers: Record<string, string | string[]>) {
  if (statusText) res.writeHead(status, statusText, headers);
  else res.writeHead(status, headers);
}
