import type { WebSocket as WsSocket } from "ws";
import { ActorError, errors } from "../errors";
import { splitHeaders } from "../http/serve";
import { DEFAULT_MAX_WEBSOCKET_MESSAGE_SIZE } from "../http/middleware";
import { originMatcher, type CorsOptions } from "../http/cors";
import { coreOf, type Registry } from "../registry/setup";
import { checkForwardOptions, forwardTarget, type ForwardOptions, type RouteAuth } from "../http/forward";
import type { ExpressWsRequest, ExpressWsSocket } from "./express-ws";
import { upgradePath } from "./route";
import { filterProtocolHeader, offeredProtocols, serveWebSocket } from "./serve";
import { watchServers } from "./upgrade";
import { limitsOf, type LimitOptions } from "../limits";

export interface ForwardWebSocketOptions<R extends ExpressWsRequest = any>
  extends Omit<ForwardOptions<any>, "maxBodySize" | "key" | "path" | "params" | "input" | "auth">,
    Pick<LimitOptions, "maxSocketsPerActor" | "maxPendingWebSocketMessages" | "maxPendingWebSocketBytes"> {
  key: (req: R) => string | string[];
  /** The path (and query string) the actor's request sees; default: the URL below the mount point. */
  path?: (req: R) => string;
  params?: (req: R) => unknown;
  input?: (req: R) => unknown;
  /** As for forwardToActor: "run" (default), "skip", or `(req) => authData` in place of onAuth. */
  auth?: RouteAuth<R>;
  maxWebSocketMessageSize?: number;
  /** Other origins whose pages may open sockets here; the request's own origin always may (SPEC §11). */
  cors?: Pick<CorsOptions, "origin">;
}

/** An express-ws route handler, `app.ws(route, forwardWebSocketToActor(...))`, that gets-or-creates the actor. */
export function forwardWebSocketToActor<R extends ExpressWsRequest = any>(
  registry: Registry<any>,
  options: ForwardWebSocketOptions<R>,
) {
  const core = coreOf(registry);
  checkForwardOptions(core, options, "forwardWebSocketToActor");
  const websocket = {
    maxMessageSize: options.maxWebSocketMessageSize ?? DEFAULT_MAX_WEBSOCKET_MESSAGE_SIZE,
    isOriginAllowed: options.cors && originMatcher(options.cors, "forwardWebSocketToActor"),
    limits: limitsOf(options, "forwardWebSocketToActor"),
  };
  watchServers();

  return function forwardWebSocketHandler(socket: ExpressWsSocket, req: R) {
    // Claims the upgrade; held frames flow from the next turn, after serveWebSocket's listeners exist.
    req.wsHandled = true;
    const { headers } = splitHeaders(req);
    filterProtocolHeader(headers, offeredProtocols(req));
    let target;
    try {
      target = forwardTarget(options, req, upgradePath(req), "forwardWebSocketToActor", websocket.limits);
    } catch (err) {
      if (!(err instanceof ActorError)) core.log.error({ err }, "forwardWebSocketToActor(): building the target failed");
      target = err instanceof ActorError ? err : errors.internal();
    }
    void serveWebSocket(core, socket as WsSocket, req, headers, target, websocket);
  };
}
