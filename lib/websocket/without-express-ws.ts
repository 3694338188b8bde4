import * as http from "node:http";
import type { Socket } from "node:net";
import { errors, publicError } from "../errors";
import type { ErrorShape } from "../http/error-shape";
import { log } from "../log";

/**
 * An actor upgrade that nothing accepts must get the 501 of the no-listener case, whatever else
 * listens for upgrades. express-ws handshakes synchronously, inside the 'upgrade' event, and sets
 * `req.ws` in that same turn; Socket.IO only ends unclaimed sockets after 1 s, and an app's own
 * `noServer` ws server may never answer. So an actor upgrade still untouched this long after the
 * event is refused, unless a ws server is still handshaking it (an asynchronous `verifyClient`).
 */
const UNCLAIMED_AFTER_MS = 200;

// On the server itself, so every copy of this module agrees (see upgrade.ts).
const WARNED = Symbol.for("express-actors.warnedNoExpressWs");
const NO_SERVER = {};

type ExpressApp = ((...args: never[]) => unknown) & { handle?: unknown; set?: unknown; enabled?: unknown; ws?: unknown };

function isExpressApp(listener: unknown): listener is ExpressApp {
  const app = listener as ExpressApp;
  return typeof app === "function" && typeof app.handle === "function" && typeof app.set === "function" && typeof app.enabled === "function";
}

/**
 * Known for sure only when the server's request listener is an Express app that express-ws never
 * touched (`expressWs(app)` gives the app its `.ws`): then the actor upgrade is refused before
 * another listener (a pathless ws server, one that destroys foreign upgrades) can answer it.
 * Socket.IO hides the app behind its own request listener: that case waits for the timer.
 */
export function servedWithoutExpressWs(server: http.Server): boolean {
  const apps = server.listeners("request").filter(isExpressApp);
  return apps.length > 0 && !apps.some((app) => typeof app.ws === "function");
}

/** Refuses the actor upgrade on `socket` unless express-ws has accepted it by then. */
export function refuseIfUnclaimed(server: http.Server, req: http.IncomingMessage & { ws?: unknown }, socket: Socket, shape: ErrorShape) {
  const cancel = () => clearTimeout(timer);
  const timer = setTimeout(() => {
    socket.off("close", cancel);
    if (req.ws) return;
    const untouched = !socket.destroyed && !socket.writableEnded && socket.bytesWritten === 0;
    // Another listener answered an actor upgrade: the client got its answer, not ours.
    if (!untouched) warnMissingExpressWs(server);
    else if (!wsHandshakePending(socket)) refuseWithoutExpressWs(server, socket, shape);
  }, UNCLAIMED_AFTER_MS);
  timer.unref();
  socket.once("close", cancel);
}

/** ws (7 and 8) listens for socket errors under this name from handleUpgrade() until it answers. */
function wsHandshakePending(socket: Socket): boolean {
  return socket.listeners("error").some((listener) => listener.name === "socketOnError");
}

/** The 501 of the no-listener case, in the body `shape` of the route (SPEC §5, or RivetKit's for the gateway). */
export function refuseWithoutExpressWs(server: http.Server, socket: Socket, shape: ErrorShape = publicError) {
  warnMissingExpressWs(server);
  const { status, body } = shape(errors.websocketNotConfigured());
  const text = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
  );
}

/** Logged once per server when an actor upgrade finds no express-ws there. */
export function warnMissingExpressWs(server: http.Server | undefined) {
  const flags = (server ?? NO_SERVER) as Record<symbol, boolean | undefined>;
  if (flags[WARNED]) return;
  flags[WARNED] = true;
  log.error(
    "a WebSocket upgrade reached an actor route, but express-ws is not set up on this server. Call expressWs(app) " +
      "(or expressWs(app, server)) once, before app.listen(), then mount actorMiddleware. Other 'upgrade' listeners " +
      "(Socket.IO, your own ws server) do not serve actor sockets; to run them side by side, give express-ws " +
      "upgradesExcept(server, theirPaths) (docs/websockets.md).",
  );
}
