import type { IncomingMessage, ServerResponse } from "node:http";
import type { Registry } from "../registry/setup";
import { coreOf } from "../registry/setup";
import { CLUSTER_HTTP_PATH, HEALTH_PATH, RAW_HTTP_PATH, RESOLVE_PATH } from "../protocol";
import { serveForwarded } from "../cluster/forwarded";
import { actorUrl, originOf, routerHeadersOf } from "./request";
import { sendError } from "./response";
import { readRouterHeaders, serveFetch, splitHeaders, type FetchTarget, type HttpOptions } from "./serve";
import { routeWebSocket } from "../websocket/route";
import { createCors, originMatcher, type CorsOptions } from "./cors";
import { watchServers } from "../websocket/upgrade";
import { stripOrigin } from "./target";
import { useLogger } from "./res-logger";
import { createGateway } from "../gateway/router";
import { limitsOf, type LimitOptions, type Limits } from "../limits";

export interface ActorMiddlewareOptions extends LimitOptions {
  /** Largest request body accepted, in bytes; larger ones get 413. Default 16 MiB. */
  maxBodySize?: number;
  /** Largest WebSocket message accepted, in bytes; a larger frame closes the socket with 1009. Default 1 MiB. */
  maxWebSocketMessageSize?: number;
  /**
   * CORS for pages on another origin; off by default. Preflights are answered here, not by onFetch.
   * `cors.origin` also lists the other origins whose pages may open WebSockets (SPEC §11).
   */
  cors?: CorsOptions;
}

type Next = (err?: unknown) => void;

export const DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024;
export const DEFAULT_MAX_WEBSOCKET_MESSAGE_SIZE = 1024 * 1024;

/**
 * The router of SPEC §2, and RivetKit's client protocol (SPEC §10), as Express middleware: mount it
 * with `app.use(path, actorMiddleware(registry))`. Works on Express 4 and 5; requests it does not
 * own go on to `next()`.
 */
export function actorMiddleware(registry: Registry<any>, options: ActorMiddlewareOptions = {}) {
  const core = coreOf(registry);
  const http: HttpOptions = { maxBodySize: options.maxBodySize ?? DEFAULT_MAX_BODY_SIZE };
  const limits = limitsOf(options, "actorMiddleware");
  const cors = createCors(options.cors);
  const websocket = {
    maxMessageSize: options.maxWebSocketMessageSize ?? DEFAULT_MAX_WEBSOCKET_MESSAGE_SIZE,
    isOriginAllowed: options.cors && originMatcher(options.cors, "actorMiddleware"),
    limits,
  };
  const gateway = createGateway(core, { http, websocket, cors, limits });
  watchServers();

  return function expressActors(req: IncomingMessage, res: ServerResponse, next: Next) {
    useLogger(res, core.log);
    const url = stripOrigin(req.url ?? "/");
    const search = url.indexOf("?");
    const pathname = search === -1 ? url : url.slice(0, search);

    if (gateway(req, res, next, url, pathname)) return;
    if (routeWebSocket(core, req, res, next, pathname, websocket)) return;

    const raw = isUnder(pathname, RAW_HTTP_PATH);
    if (cors && (raw || pathname === RESOLVE_PATH || pathname === HEALTH_PATH) && cors(req, res)) return;

    if (raw) {
      let target: FetchTarget;
      try {
        const { query, params } = readRouterHeaders(routerHeadersOf(req.rawHeaders), limits);
        target = { query, params, path: url.slice(RAW_HTTP_PATH.length), authBy: "router" };
      } catch (err) {
        sendError(res, err);
        return;
      }
      serveFetch(core, req, res, target, http).catch(next);
      return;
    }
    if (pathname === RESOLVE_PATH && req.method === "POST") {
      resolveActor(core, req, res, limits).catch(next);
      return;
    }
    if (core.cluster && isUnder(pathname, CLUSTER_HTTP_PATH)) {
      serveForwarded(core, req, res, http).catch(next);
      return;
    }
    if (pathname === HEALTH_PATH && (req.method === "GET" || req.method === "HEAD")) {
      const status = core.shuttingDown ? "shutting_down" : core.cluster && !core.cluster.healthy() ? "cluster_unavailable" : "ok";
      const body = JSON.stringify({ status });
      res.writeHead(status === "ok" ? 200 : 503, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
      });
      res.end(req.method === "HEAD" ? undefined : body);
      return;
    }
    next();
  };
}

/** `POST {mount}/actors/resolve`: what the client's create() and resolve() use; answers `{ actorId }`. */
async function resolveActor(core: ReturnType<typeof coreOf>, req: IncomingMessage, res: ServerResponse, limits: Limits) {
  try {
    const { headers, rivet } = splitHeaders(req);
    const { query, params } = readRouterHeaders(rivet, limits);
    const request = new Request(actorUrl(originOf(req), "/"), { method: "POST", headers });
    const { meta } = await core.locate(query, { request, params, intent: undefined, authBy: "router" });
    const body = JSON.stringify({ actorId: meta.actorId });
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  } catch (err) {
    sendError(res, err);
  }
}

function isUnder(pathname: string, prefix: string): boolean {
  return pathname.startsWith(prefix) && (pathname.length === prefix.length || pathname.charCodeAt(prefix.length) === 47);
}
