import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import type { WebSocket as WsSocket } from "ws";
import { log } from "../log";

/**
 * express-ws@5 depends on ws 7, so a user's install hands us ws 7.5 sockets; an app that forces
 * ws 8 hands us ws 8 ones. ws 7 has no pause()/resume() and emits text messages as strings with
 * no isBinary argument; everything else we touch is the same in both.
 */
interface Ws7Internals {
  _socket: { pause(): void; resume(): void };
  _receiver: { _writableState: { needDrain: boolean } };
}

export function hasPause(ws: WsSocket): boolean {
  return typeof (ws as { pause?: unknown }).pause === "function";
}

export function pauseWs(ws: WsSocket) {
  if (hasPause(ws)) ws.pause();
  else if (ws.readyState === ws.OPEN) (ws as unknown as Ws7Internals)._socket.pause();
}

/** As ws 8's resume(): the receiver's own backpressure keeps the socket paused until it drains. */
export function resumeWs(ws: WsSocket) {
  if (hasPause(ws)) {
    ws.resume();
    return;
  }
  const internals = ws as unknown as Ws7Internals;
  if (ws.readyState === ws.OPEN && !internals._receiver._writableState.needDrain) internals._socket.resume();
}

/** ws 8 passes (data, isBinary); ws 7 passes (data) with text as a string. */
export function onWsMessage(ws: WsSocket, listener: (data: Uint8Array | string, binary: boolean) => void) {
  if (hasPause(ws)) ws.on("message", listener);
  else ws.on("message", (data: Buffer | string) => listener(data, typeof data !== "string"));
}

/** The major version of the ws that express-ws loads, or undefined without express-ws. */
export function expressWsWsMajor(): number | undefined {
  try {
    const expressWs = dirname(require.resolve("express-ws/package.json"));
    const { version } = JSON.parse(readFileSync(require.resolve("ws/package.json", { paths: [expressWs] }), "utf8"));
    return Number(String(version).split(".")[0]);
  } catch {
    return undefined;
  }
}

/** Said once at startup: sockets from a ws other than 7 or 8 are untested (express-ws 4 brings ws 5). */
export function warnUnsupportedWs(major = expressWsWsMajor()) {
  if (major === undefined || major === 7 || major === 8) return;
  log.warn(
    `express-ws loads ws ${major}.x; express-actors is tested with ws 7 and 8 (express-ws 5). ` +
      "Install express-ws@5 so actor WebSockets behave as documented.",
  );
}
