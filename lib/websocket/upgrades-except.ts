import * as http from "node:http";
import type * as https from "node:https";

/**
 * A server for express-ws that receives `server`'s WebSocket upgrades except those under `paths`:
 * `expressWs(app, upgradesExcept(server, ["/socket.io/"]))`. express-ws's ws server handshakes
 * every upgrade on the server it is given, so next to Socket.IO (or any other upgrade listener)
 * both would answer the same socket: engine.io's handshake then fails, or, with ws 8, the process
 * crashes ("handleUpgrade() was called more than once"). The returned server never listens; it
 * only relays the other paths' upgrades, so the paths given stay with their own listener.
 */
export function upgradesExcept(server: http.Server | https.Server, paths: string[]): http.Server {
  if (!server || typeof server.on !== "function") throw new TypeError("upgradesExcept(server, paths): server must be an http or https server");
  if (!Array.isArray(paths) || paths.some((p) => typeof p !== "string" || !p.startsWith("/"))) {
    throw new TypeError('upgradesExcept(server, paths): paths must be an array of paths starting with "/", e.g. ["/socket.io/"]');
  }
  const prefixes = paths.map((p) => p.replace(/\/+$/, ""));
  const relay = new http.Server();
  server.on("upgrade", (req: http.IncomingMessage, socket, head) => {
    if (!isUnderAny((req.url ?? "/").split("?")[0], prefixes)) relay.emit("upgrade", req, socket, head);
  });
  return relay;
}

/** `/socket.io` and `/socket.io/` both cover `/socket.io` and everything below it. */
function isUnderAny(pathname: string, prefixes: string[]): boolean {
  return prefixes.some((p) => p === "" || pathname === p || pathname.startsWith(p + "/"));
}
