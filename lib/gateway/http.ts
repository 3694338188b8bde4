import type { IncomingMessage, ServerResponse } from "node:http";
import type { RegistryCore } from "../registry/core";
import { sendError } from "../http/response";
import { serveFetch, type FetchTarget, type HttpOptions } from "../http/serve";
import { connParamsHeader, dropInternalHeaders } from "./headers";
import type { GatewayRoute } from "./paths";
import { resolveGatewayTarget } from "./target";
import type { Limits } from "../limits";

/** `ANY {mount}/gateway/{actorId|name}/request/{path}` → the actor's onFetch, with onAuth (source "gateway"). */
export async function serveGatewayFetch(
  core: RegistryCore,
  req: IncomingMessage,
  res: ServerResponse,
  route: GatewayRoute,
  options: HttpOptions,
  limits: Limits,
): Promise<void> {
  let target: FetchTarget;
  try {
    const params = connParamsHeader(req.rawHeaders, limits.maxConnParamsSize);
    const { query, path } = await resolveGatewayTarget(core, route, limits);
    target = { query, params, path, authBy: "gateway", via: "gateway", prepare: dropInternalHeadersOf };
  } catch (err) {
    sendError(res, err);
    return;
  }
  await serveFetch(core, req, res, target, options);
}

/** RivetKit's internal headers never reach the actor, on the edge or on the owner it forwards to. */
export function dropInternalHeadersOf(request: Request) {
  dropInternalHeaders(request.headers);
}
