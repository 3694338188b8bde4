import type { WebSocket as WsSocket } from "ws";
import { ActorError, errors } from "../errors";
import { splitHeaders } from "../http/serve";
import { log } from "../log";
import { DEFAULT_MAX_WEBSOCKET_MESSAGE_SIZE } from "../http/middleware";
import { parseQuery } from "../registry/query";
import { coreOf, type Registry } from "../registry/setup";
import type { ForwardOptions } from "../http/forward";
import { upgradePath, type ExpressWsRequest } from "./route";
import { filterProtocolHeader, offeredProtocols, serveWebSocket } from "./serve";
import { watchServers } from "./upgrade";

export interface ForwardWebSocketOptions<R extends ExpressWsRequest = any> extends Omit<ForwardOptions<any>, "maxBodySize" | "key" | "path" | "params" | "input"> {
  key: (req: R) => string | string[];
  /** The path (and query string) the actor's request sees; default: the URL below the mount point. */
  path?: (req: R) => string;
  params?: (req: R) => unknown;
  input?: (req: R) => unknown;
  maxWebSocketMessageSize?: number;
}

/** An express-ws route handler, `app.ws(route, forwardWebSocketToActor(...))`, that gets-or-creates the actor. */
export function forwardWebSocketToActor<R extends ExpressWsRequest = any>(
  registry: Registry<any>,
  options: ForwardWebSocketOptions<R>,
) {
  const core = coreOf(registry);
  if (!options || typeof options.name !== "string" || typeof options.key !== "function") {
    throw new TypeError("forwardWebSocketToActor(): `name` (string) and `key` (function) are required");
  }
  // A misspelled name fails at startup rather than as a 4404 on every upgrade.
  if (!Object.prototype.hasOwnProperty.call(core.definitions, options.name)) {
    throw new TypeError(`forwardWebSocketToActor(): the registry has no actor named "${options.name}"`);
  }
  const websocket = { maxMessageSize: options.maxWebSocketMessageSize ?? DEFAULT_MAX_WEBSOCKET_MESSAGE_SIZE };
  const skipAuth = options.auth === "skip";
  watchServers();

  return function forwardWebSocketHandler(ws: WsSocket, req: R) {
    // Claims the upgrade; held frames flow from the next turn, after serveWebSocket's listeners exist.
    req.wsHandled = true;
    const { headers } = splitHeaders(req);
    filterProtocolHeader(headers, offeredProtocols(req));
    let target;
    try {
      const query = parseQuery({ getOrCreateForKey: { name: options.name, key: options.key(req), input: options.input?.(req) } });
      const path = options.path ? options.path(req) : upgradePath(req);
      if (typeof path !== "string") throw errors.invalidRequest("forwardWebSocketToActor(): path(req) must return a string");
      target = { query, params: options.params?.(req), path, skipAuth };
    } catch (err) {
      if (!(err instanceof ActorError)) log.error("forwardWebSocketToActor(): building the target failed:", err);
      target = err instanceof ActorError ? err : errors.internal();
    }
    void serveWebSocket(core, ws, req, headers, target, websocket);
  };
}
