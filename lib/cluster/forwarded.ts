import type { IncomingMessage, ServerResponse } from "node:http";
import type { WebSocket as WsSocket } from "ws";
import { ActorError, Forbidden } from "../errors";
import { gatewayError } from "../gateway/errors";
import { dropInternalHeadersOf } from "../gateway/http";
import { useErrorShape } from "../http/error-shape";
import { sendError } from "../http/response";
import { serveFetch, splitHeaders, type HttpOptions } from "../http/serve";
import { filterProtocolHeader, offeredProtocols, serveWebSocket, type WebSocketOptions, type WebSocketTarget } from "../websocket/serve";
import { parseQuery } from "../registry/query";
import type { RegistryCore } from "../registry/core";
import { FORWARD_HEADER } from "./signing";

/**
 * `ANY {mount}/actors/cluster/http/*`: a request another node accepted, authorized and forwarded
 * here because this node owns (or owned) its actor. Only a valid signature gets in; onAuth has
 * already run at the edge and never runs again.
 */
export async function serveForwarded(core: RegistryCore, req: IncomingMessage, res: ServerResponse, http: HttpOptions) {
  const header = req.headers[FORWARD_HEADER];
  const claims = core.cluster!.verify(typeof header === "string" ? header : undefined);
  // The method is bound too; the path is the signed one (a proxy may normalize the URL's).
  if (!claims || claims.socket || claims.method !== req.method) {
    sendError(res, new Forbidden("Forwarded request without a valid cluster signature"));
    return;
  }
  let query;
  try {
    query = parseQuery({ getForId: { name: claims.name, actorId: claims.actorId } });
  } catch (err) {
    sendError(res, err);
    return;
  }
  const gateway = claims.via === "gateway";
  if (gateway) useErrorShape(res, gatewayError);
  await serveFetch(core, req, res, {
    query,
    params: undefined,
    path: claims.path,
    // onAuth ran at the edge: its result comes signed, and counts as the route's trusted auth data.
    authBy: () => claims.auth,
    forwarded: { origin: claims.origin, remembered: claims.remembered },
    prepare: gateway ? dropInternalHeadersOf : undefined,
  }, http);
}

/**
 * `GET {mount}/actors/cluster/websocket` upgrades: a socket another node accepted, authorized and
 * relays here (cluster/socket-relay.ts). Only a valid socket signature opens it; anything else closes
 * with 4403. The actor sees the client's origin, path and headers, as if the client were here.
 */
export function serveForwardedSocket(core: RegistryCore, ws: WsSocket, req: IncomingMessage, options: WebSocketOptions) {
  const header = req.headers[FORWARD_HEADER];
  const claims = core.cluster!.verify(typeof header === "string" ? header : undefined);
  const { headers } = splitHeaders(req);
  filterProtocolHeader(headers, offeredProtocols(req));
  let target: WebSocketTarget | ActorError;
  if (!claims?.socket) {
    target = new Forbidden("Relayed WebSocket without a valid cluster signature");
  } else {
    try {
      target = {
        query: parseQuery({ getForId: { name: claims.name, actorId: claims.actorId } }),
        params: undefined,
        path: claims.path,
        authBy: () => claims.auth,
        forwarded: { origin: claims.origin },
      };
    } catch (err) {
      target = err instanceof ActorError ? err : new Forbidden("Relayed WebSocket for an invalid actor");
    }
  }
  void serveWebSocket(core, ws, req, headers, target, options);
}
