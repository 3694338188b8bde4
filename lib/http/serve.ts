import type { IncomingMessage, ServerResponse } from "node:http";
import { errors } from "../errors";
import type { AuthBy, RegistryCore } from "../registry/core";
import { DEFAULT_LIMITS, type Limits } from "../limits";
import { checkDepth, parseQueryText, type ParsedQuery, type QueryLimits } from "../registry/query";
import { actorUrlText, buildRequest, copyHeaders, originOf, routerHeadersOf, type RouterHeaders } from "./request";
import { sendError, sendResponse } from "./response";
import { refuseBody } from "./too-large";

export interface HttpOptions {
  maxBodySize: number;
}

export type RouterLimits = QueryLimits & Pick<Limits, "maxConnParamsSize">;

export interface FetchTarget {
  query: ParsedQuery;
  params: unknown;
  /** Path and query string as the actor should see them. */
  path: string;
  authBy: AuthBy;
  /** Adjusts the built Request before onAuth and the actor see it (the gateway drops its own headers). */
  prepare?: (request: Request) => void;
}

/** The query, encoding and conn params of SPEC §2, validated. */
export function readRouterHeaders(rivet: RouterHeaders, limits: RouterLimits = DEFAULT_LIMITS): { query: ParsedQuery; params: unknown } {
  if (rivet.encoding !== undefined && rivet.encoding.trim().toLowerCase() !== "json") {
    throw errors.invalidEncoding(rivet.encoding);
  }
  const text = rivet.query ?? rivet.queryAlias;
  if (text === undefined) throw errors.invalidQuery("Missing the X-RivetKit-Actor-Query header");
  const query = parseQueryText(text, limits);
  let params: unknown;
  if (rivet.params !== undefined) {
    if (rivet.params.length > limits.maxConnParamsSize) {
      throw errors.invalidQuery(`X-RivetKit-Conn-Params is ${rivet.params.length} characters long; the limit is ${limits.maxConnParamsSize}`);
    }
    try {
      params = JSON.parse(rivet.params);
    } catch {
      throw errors.invalidQuery("X-RivetKit-Conn-Params is not valid JSON");
    }
    checkDepth(params, "X-RivetKit-Conn-Params");
  }
  return { query, params };
}

/** Runs one HTTP request through an actor's onFetch and writes its Response (or the SPEC §5 error). */
export async function serveFetch(
  core: RegistryCore,
  req: IncomingMessage,
  res: ServerResponse,
  target: FetchTarget,
  options: HttpOptions,
): Promise<void> {
  const declared = Number(req.headers["content-length"]);
  if (declared > options.maxBodySize) {
    refuseBody(req, res, options.maxBodySize);
    return;
  }
  let built;
  try {
    built = buildRequest(req, res, actorUrlText(originOf(req), target.path), options.maxBodySize);
    target.prepare?.(built.request);
  } catch (err) {
    sendError(res, err);
    return;
  }
  const tooLarge = () => built.overflowed && (refuseBody(req, res, options.maxBodySize), true);
  try {
    const { instance, auth } = await core.enter(target.query, {
      request: built.request,
      params: target.params,
      intent: "fetch",
      authBy: target.authBy,
    });
    try {
      const response = await (core.telemetry.observer?.fetch(instance, built.request, auth) ?? instance.fetch(built.request, auth));
      if (tooLarge()) {
        response.body?.cancel().catch(() => {});
        return;
      }
      await sendResponse(req, res, response, core);
    } finally {
      instance.release();
    }
  } catch (err) {
    if (!tooLarge()) sendError(res, err);
  } finally {
    built.dispose();
  }
}

/** The headers an actor's onAuth and onWebSocket see, and the router headers beside them. */
export function splitHeaders(req: IncomingMessage): { headers: Headers; rivet: RouterHeaders } {
  return { headers: copyHeaders(req.rawHeaders, new Headers()), rivet: routerHeadersOf(req.rawHeaders) };
}
