import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { WebSocket as WsSocket } from "ws";
import { ActorError, errors } from "../errors";
import { CLUSTER_WEBSOCKET_PATH, RAW_WEBSOCKET_PATH } from "../protocol";
import { serveForwardedSocket } from "../cluster/forwarded";
import type { RegistryCore } from "../registry/core";
import { sendError } from "../http/response";
import { stripOrigin } from "../http/target";
import { readRouterHeaders, splitHeaders } from "../http/serve";
import { filterProtocolHeader, offeredProtocols, readProtocolEntries, serveWebSocket, type WebSocketOptions, type WebSocketTarget } from "./serve";
import type { ExpressWsRequest } from "./express-ws";
import { upgradeInfo } from "./upgrade";
import { warnMissingExpressWs } from "./without-express-ws";

const SUFFIX = "/.websocket";

/** The upgrade's path and query below the mount point, without express-ws's `/.websocket`. */
export function upgradePath(req: ExpressWsRequest): string {
  const info = upgradeInfo(req);
  const original = info && stripOrigin(info.url);
  const base = req.baseUrl ?? "";
  if (original !== undefined && original.startsWith(base)) {
    const rest = original.slice(base.length);
    return rest.startsWith("/") ? rest : "/" + rest;
  }
  const url = stripOrigin(req.url ?? "/");
  const q = url.indexOf("?");
  const path = q === -1 ? url : url.slice(0, q);
  const trimmed = path.endsWith(SUFFIX) ? path.slice(0, -SUFFIX.length) : path;
  return (trimmed || "/") + (q === -1 ? "" : url.slice(q));
}

function isUnder(pathname: string, prefix: string): boolean {
  return pathname.startsWith(prefix) && (pathname.length === prefix.length || pathname.charCodeAt(prefix.length) === 47);
}

/**
 * A plain request on a WebSocket route: 426, or 501 when it is an upgrade that nothing accepted
 * (express-ws is missing), with a one-time log.
 */
export function refusePlainRequest(req: IncomingMessage, res: ServerResponse) {
  if (req.headers.upgrade?.toLowerCase() === "websocket" && /\bupgrade\b/i.test(req.headers.connection ?? "")) {
    warnMissingExpressWs((req.socket as { server?: Server }).server);
    sendError(res, errors.websocketNotConfigured());
  } else {
    sendError(res, new ActorError(426, "upgrade_required", "This route only accepts WebSocket upgrades"));
  }
}

/**
 * Handles `{mount}/actors/raw/websocket/*` in actorMiddleware; returns false for plain requests
 * that are not for this route. A plain GET there gets 426; an upgrade that arrives as a plain
 * request means express-ws is missing (nothing accepted it), so it gets 501 and a one-time log.
 * An accepted upgrade for any other path goes to next(): the HTTP routes must never see it.
 */
export function routeWebSocket(
  core: RegistryCore,
  req: ExpressWsRequest,
  res: ServerResponse,
  next: () => void,
  pathname: string,
  options: WebSocketOptions,
): boolean {
  const ws = req.ws as WsSocket | undefined;
  if (!ws) {
    if (!isUnder(pathname, RAW_WEBSOCKET_PATH) || req.method !== "GET") return false;
    refusePlainRequest(req, res);
    return true;
  }
  const path = upgradePath(req);
  const q = path.indexOf("?");
  const below = q === -1 ? path : path.slice(0, q);
  if (core.cluster && isUnder(below, CLUSTER_WEBSOCKET_PATH)) {
    req.wsHandled = true;
    serveForwardedSocket(core, ws, req, options);
    return true;
  }
  if (!isUnder(below, RAW_WEBSOCKET_PATH)) {
    next();
    return true;
  }
  // Claims the upgrade: express-ws stops routing it, and its held frames flow from the next turn,
  // after serveWebSocket has attached listeners synchronously.
  req.wsHandled = true;
  const { headers, rivet } = splitHeaders(req);
  const offered = offeredProtocols(req);
  readProtocolEntries(offered, rivet);
  filterProtocolHeader(headers, offered);
  let target: WebSocketTarget | ActorError;
  try {
    const { query, params } = readRouterHeaders(rivet, options.limits);
    target = { query, params, path: path.slice(RAW_WEBSOCKET_PATH.length), authBy: "router" };
  } catch (err) {
    target = err instanceof ActorError ? err : new ActorError(400, "invalid_query", "Invalid actor query");
  }
  void serveWebSocket(core, ws, req, headers, target, options);
  return true;
}
