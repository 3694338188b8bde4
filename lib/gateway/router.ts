import type { IncomingMessage, ServerResponse } from "node:http";
import type { WebSocket as WsSocket } from "ws";
import { useErrorShape } from "../http/error-shape";
import { sendError } from "../http/response";
import type { HttpOptions } from "../http/serve";
import type { RegistryCore } from "../registry/core";
import type { ExpressWsRequest } from "../websocket/express-ws";
import { refusePlainRequest, upgradePath } from "../websocket/route";
import type { WebSocketOptions } from "../websocket/serve";
import type { Limits } from "../limits";
import { serveActors } from "./actors";
import { gatewayError, unsupported } from "./errors";
import { serveGatewayFetch } from "./http";
import { sendMetadata } from "./metadata";
import { ACTORS_PATH, METADATA_PATH, parseGatewayPath } from "./paths";
import { refuseWebSocket, serveGatewayWebSocket } from "./websocket";

export interface GatewayOptions {
  http: HttpOptions;
  websocket: WebSocketOptions;
  limits: Limits;
  /** The router's CORS handler; true when it answered a preflight. */
  cors?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

type Next = (err?: unknown) => void;
const ACTOR_METHODS = new Set(["GET", "PUT", "POST"]);

/**
 * The routes of RivetKit's client protocol (SPEC §10), beside the router's under the same mount.
 * Returns false for requests that are not theirs.
 */
export function createGateway(core: RegistryCore, options: GatewayOptions) {
  const { http, websocket, cors, limits } = options;

  return function gateway(req: ExpressWsRequest, res: ServerResponse, next: Next, url: string, pathname: string): boolean {
    if (req.ws) {
      const ws = req.ws as WsSocket;
      const route = parseGatewayPath(upgradePath(req));
      if (route?.kind === "websocket") serveGatewayWebSocket(core, ws, req, route, websocket);
      else if (route?.kind === "connect") refuseWebSocket(core, ws, req, unsupported.connections(), websocket);
      else return false;
      return true;
    }
    if (pathname === METADATA_PATH || pathname === ACTORS_PATH) {
      const method = req.method ?? "GET";
      const served = pathname === METADATA_PATH ? method === "GET" : ACTOR_METHODS.has(method);
      // OPTIONS may be the browser's CORS preflight for the client's PUT / POST.
      if (!served && method !== "OPTIONS") return false;
      useErrorShape(res, gatewayError);
      if (cors?.(req, res)) return true;
      // A plain OPTIONS is the app's.
      if (!served) return false;
      if (pathname === METADATA_PATH) sendMetadata(core, res);
      else serveActors(core, req, res, searchOf(url), http.maxBodySize, limits).catch(next);
      return true;
    }
    const route = parseGatewayPath(url);
    if (!route) return false;
    useErrorShape(res, gatewayError);
    if (cors?.(req, res)) return true;
    if (route.kind === "websocket") refusePlainRequest(req, res);
    else if (route.kind === "request") serveGatewayFetch(core, req, res, route, http, limits).catch(next);
    else sendError(res, route.kind === "action" ? unsupported.actions() : unsupported.connections());
    return true;
  };
}

function searchOf(url: string): string {
  const q = url.indexOf("?");
  return q === -1 ? "" : url.slice(q + 1);
}
