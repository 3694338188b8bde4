import type { IncomingMessage, ServerResponse } from "node:http";
import { OwnedElsewhere, type HopRefusal } from "../cluster/types";
import { ActorError, errors } from "../errors";
import type { AuthBy, Entered, RegistryCore } from "../registry/core";
import { CLUSTER_UNSERVED_HEADER } from "../protocol";
import { DEFAULT_LIMITS, type Limits } from "../limits";
import { checkDepth, parseQueryText, type ParsedQuery, type QueryLimits } from "../registry/query";
import { actorUrlText, buildRequest, copyHeaders, originOf, routerHeadersOf, type BuiltRequest, type RouterHeaders } from "./request";
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
  /** A request another node forwarded (SPEC §9): the origin its client used; see EnterOptions.forwarded. */
  forwarded?: { origin: string; remembered?: boolean };
  /** Served for RivetKit's gateway (SPEC §10); a forwarding hop tells the owner so. */
  via?: "gateway";
  /**
   * Placed again because the owner it was remembered at did not serve it: asks the store and Redis.
   * `unreachable`: that owner's node id, when it could not be connected to.
   */
  again?: { unreachable?: string };
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
  const { forwarded } = target;
  let built;
  try {
    const origin = forwarded ? forwarded.origin : originOf(req);
    built = buildRequest(req, res, actorUrlText(origin, target.path), options.maxBodySize, core.cluster !== undefined);
    target.prepare?.(built.request);
  } catch (err) {
    sendError(res, err);
    return;
  }
  const tooLarge = () => built.overflowed && (refuseBody(req, res, options.maxBodySize), true);
  let entered: Entered | undefined;
  try {
    entered = await core.enter(target.query, {
      request: built.request,
      params: target.params,
      intent: "fetch",
      authBy: target.authBy,
      forwarded: forwarded ? (forwarded.remembered ? "remembered" : true) : false,
      // A body streamed to an owner that turns out to have let go could not be sent again.
      rememberedOwner: !target.again && built.replayable,
    });
    const { instance, auth } = entered;
    try {
      const response = await (core.telemetry.observer?.fetch(instance, built.request, auth) ?? instance.fetch(built.request, auth));
      if (tooLarge()) {
        response.body?.cancel().catch(() => {});
        return;
      }
      // In a cluster a lost lease ends the response too: this node must stop serving the actor.
      const cut = instance.lease && (() => res.destroy());
      if (cut) instance.closeOnLeaseLoss(cut);
      try {
        await sendResponse(req, res, response, core);
      } finally {
        if (cut) instance.keepOnLeaseLoss(cut);
      }
    } finally {
      instance.release();
    }
  } catch (err) {
    if (err instanceof OwnedElsewhere) forward(core, req, res, built, err, target, options);
    else if (!tooLarge()) {
      if (forwarded && !entered && isUnserved(err)) res.setHeader(CLUSTER_UNSERVED_HEADER, err.code);
      sendError(res, err);
    }
  } finally {
    built.dispose();
  }
}

/** A forwarded request this node refused before any actor saw it, since another node has the actor or will. */
function isUnserved(err: unknown): err is ActorError {
  return err instanceof ActorError && (err.code === "lease_lost" || err.code === "shutting_down");
}

/**
 * Hands the request to the node that owns its actor. The body must still be on the socket (or
 * rebuilt from a parser's copy): one that onAuth has read cannot be sent on. When the owner was
 * only remembered and refuses the request unserved, the request is placed once more (with the auth
 * data onAuth gave, so it does not run again) if it can be: without a body, or with a parser's copy.
 */
function forward(
  core: RegistryCore,
  req: IncomingMessage,
  res: ServerResponse,
  built: BuiltRequest,
  to: OwnedElsewhere,
  target: FetchTarget,
  options: HttpOptions,
) {
  if (built.bodyTouched) {
    core.log.error({ actor: to.meta.name }, `onAuth of "${to.meta.name}" read the request body, which a cluster must forward to the owning node untouched`);
    sendError(res, errors.internal());
    return;
  }
  // Redis still names the node just found unreachable: no second hop to it.
  if (target.again?.unreachable === to.owner.nodeId) {
    sendError(res, errors.ownerUnreachable(to.owner.retryAfter));
    return;
  }
  const again = to.remembered && built.replayable;
  const claims = {
    actorId: to.meta.actorId,
    name: to.meta.name,
    auth: to.auth,
    origin: new URL(built.request.url).origin,
    method: built.request.method,
    path: target.path,
    ...(target.via && { via: target.via }),
    ...(again && { remembered: true as const }),
  };
  built.handOver();
  const refused = (why: HopRefusal) => {
    core.ownerRefused(to.meta.actorId, to.owner);
    if (why === "failed" || !again) return false;
    const unreachable = why === "unconnected" ? to.owner.nodeId : undefined;
    serveFetch(core, req, res, { ...target, authBy: () => to.auth, again: { unreachable } }, options).catch((err) => sendError(res, err));
    return true;
  };
  const { observer } = core.telemetry;
  if (observer) observer.forward(built.request, claims, (watch) => core.cluster!.forwardHttp(req, res, to.owner, claims, built.rebuilt, watch, refused));
  else core.cluster!.forwardHttp(req, res, to.owner, claims, built.rebuilt, undefined, refused);
}

/** The headers an actor's onAuth and onWebSocket see, and the router headers beside them. */
export function splitHeaders(req: IncomingMessage): { headers: Headers; rivet: RouterHeaders } {
  return { headers: copyHeaders(req.rawHeaders, new Headers()), rivet: routerHeadersOf(req.rawHeaders) };
}
