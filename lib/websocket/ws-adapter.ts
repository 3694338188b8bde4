import type { IncomingMessage } from "node:http";
import type { WebSocket as WsSocket } from "ws";
import { driverOf, W3CWebSocket, type SocketDriver } from "./socket";
import { releaseUpgrade } from "./upgrade";
import { onWsMessage, pauseWs, resumeWs } from "./ws-compat";

export interface AdaptOptions {
  url: string;
  maxMessageSize: number;
  /** Messages and bytes held before onWebSocket's setup returns; past either the socket stops reading. */
  maxPending?: { messages: number; bytes: number };
  onListenerError: (err: unknown) => void;
}

// One options object per frame type instead of one per send (the echo hot path).
const BINARY = { binary: true } as const;
const TEXT = { binary: false } as const;

/** Private parts of ws 7 and 8 we rely on (both covered by the WebSocket suite). */
interface WsReceiver {
  _maxPayload?: number;
  prependListener(event: "error", listener: (err: Error & { code?: string }) => void): void;
}

/**
 * Wraps an accepted `ws` socket in the W3C surface. The socket is OPEN and holds its events until
 * the driver's start(); a frame over maxMessageSize closes it with 1009 before it is buffered whole.
 */
export function adaptWs(ws: WsSocket, req: IncomingMessage, options: AdaptOptions): { socket: W3CWebSocket; driver: SocketDriver } {
  const socket = new W3CWebSocket({
    url: options.url,
    binaryType: "arraybuffer",
    open: { protocol: ws.protocol, extensions: ws.extensions },
    onListenerError: options.onListenerError,
    maxHeld: options.maxPending,
    transport: {
      send: (data, binary, done) => ws.send(data, binary ? BINARY : TEXT, done),
      close: (code, reason) => (code === undefined ? ws.close() : ws.close(code, reason)),
      pause: () => pauseWs(ws),
      resume: () => resumeWs(ws),
    },
  });
  const driver = driverOf(socket);
  ws.binaryType = "nodebuffer";
  limitMessageSize(ws, options.maxMessageSize, driver);
  // On ws 8 the driver's own function is the listener: no wrapper on the hot path.
  onWsMessage(ws, driver.message);
  ws.on("error", () => driver.error());
  // ws 8 gives the reason as a Buffer, ws 7 as a string.
  ws.on("close", (code: number, reason: Buffer | string) => driver.closed(code, reason.toString("utf8"), code !== 1006));
  // The upgrade hook held the frames until now, so nothing arrived before these listeners.
  releaseUpgrade(req);
  return { socket, driver };
}

function limitMessageSize(ws: WsSocket, limit: number, driver: SocketDriver) {
  const receiver = (ws as unknown as { _receiver?: WsReceiver })._receiver;
  if (receiver && typeof receiver._maxPayload === "number") {
    receiver._maxPayload = limit;
    // ws closes with a bare 1009; our close frame goes first so the reason says why.
    receiver.prependListener("error", (err) => {
      if (err.code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH") driver.fail(1009, "message_too_big");
    });
    return;
  }
  ws.on("message", (data: Buffer | string) => {
    if (Buffer.byteLength(data) > limit) driver.fail(1009, "message_too_big");
  });
}
