import type { WebSocket as WsSocket } from "ws";
import { ActorError, errors } from "../errors";
import { splitHeaders } from "../http/serve";
import type { RegistryCore } from "../registry/core";
import type { ExpressWsRequest } from "../websocket/express-ws";
import { filterProtocolHeader, offeredProtocols, serveWebSocket, type WebSocketOptions, type WebSocketTarget } from "../websocket/serve";
import { dropInternalHeaders, parseConnParams } from "./headers";
import type { GatewayRoute } from "./paths";
import { resolveGatewayTarget } from "./target";
import { DEFAULT_LIMITS, type Limits } from "../limits";

const CONN_PARAMS = "rivet_conn_params.";
const ENCODING = "rivet_encoding.";
/** Raw sockets carry no RivetKit envelope, so any of the client's encodings is fine. */
const ENCODINGS = new Set(["bare", "json", "cbor"]);

/**
 * `GET {mount}/gateway/{actorId|name}/websocket/{path}` → the actor's onWebSocket. The client
 * offers `rivet`, `rivet_encoding.*` and maybe `rivet_conn_params.*`; the handshake has already
 * selected `rivet` (websocket/upgrade.ts). Refusals close the open socket (SPEC §5).
 */
export function serveGatewayWebSocket(
  core: RegistryCore,
  ws: WsSocket,
  req: ExpressWsRequest,
  route: GatewayRoute,
  options: WebSocketOptions,
) {
  const { headers } = splitHeaders(req);
  dropInternalHeaders(headers);
  const offered = offeredProtocols(req);
  filterProtocolHeader(headers, offered);
  void targetOf(core, route, offered, options.limits ?? DEFAULT_LIMITS).then((target) => {
    // Claimed only now: until then the upgrade's frames stay held, so none is lost while the id is looked up.
    req.wsHandled = true;
    return serveWebSocket(core, ws, req, headers, target, options);
  });
}

/** Accepts the upgrade, then closes it with the code of `err` (SPEC §5). */
export function refuseWebSocket(core: RegistryCore, ws: WsSocket, req: ExpressWsRequest, err: ActorError, options: WebSocketOptions) {
  req.wsHandled = true;
  void serveWebSocket(core, ws, req, new Headers(), err, options);
}

async function targetOf(core: RegistryCore, route: GatewayRoute, offered: string[], limits: Limits): Promise<WebSocketTarget | ActorError> {
  try {
    const params = connParamsEntry(offered, limits.maxConnParamsSize);
    const { query, path } = await resolveGatewayTarget(core, route, limits);
    return { query, params, path, authBy: "gateway" };
  } catch (err) {
    if (err instanceof ActorError) return err;
    core.log.error({ err }, "resolving a gateway WebSocket failed");
    return errors.internal();
  }
}

/** Conn params from the first `rivet_conn_params.{encodeURIComponent(JSON)}` entry; every `rivet_encoding.` entry is checked. */
function connParamsEntry(offered: string[], maxSize: number): unknown {
  let params: unknown;
  let seenParams = false;
  for (const entry of offered) {
    if (entry.startsWith(ENCODING)) {
      const encoding = entry.slice(ENCODING.length);
      if (!ENCODINGS.has(encoding)) {
        throw new ActorError(400, "invalid_encoding", `Unsupported rivet_encoding ${JSON.stringify(encoding)}; expected bare, json or cbor`);
      }
    } else if (entry.startsWith(CONN_PARAMS) && !seenParams) {
      seenParams = true;
      let text: string;
      try {
        text = decodeURIComponent(entry.slice(CONN_PARAMS.length));
      } catch {
        throw errors.invalidQuery("The rivet_conn_params subprotocol entry has a malformed percent-escape");
      }
      params = parseConnParams(text, "The rivet_conn_params subprotocol entry", maxSize);
    }
  }
  return params;
}
