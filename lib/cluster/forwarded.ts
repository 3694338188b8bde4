import type { IncomingMessage, ServerResponse } from "node:http";
import { Forbidden } from "../errors";
import { gatewayError } from "../gateway/errors";
import { dropInternalHeadersOf } from "../gateway/http";
import { useErrorShape } from "../http/error-shape";
import { sendError } from "../http/response";
import { serveFetch, type HttpOptions } from "../http/serve";
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
  if (!claims || claims.method !== req.method) {
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
    forwarded: { origin: claims.origin },
    prepare: gateway ? dropInternalHeadersOf : undefined,
  }, http);
}
