import type { IncomingMessage, ServerResponse } from "node:http";
import type { ActorDefinition } from "../actor/definition";
import { errors } from "../errors";
import { parseQuery, type KeyLimits } from "../registry/query";
import { limitsOf, type LimitOptions } from "../limits";
import type { AuthBy, RegistryCore } from "../registry/core";
import { coreOf, type Registry } from "../registry/setup";
import { DEFAULT_MAX_BODY_SIZE } from "./middleware";
import { sendError } from "./response";
import { serveFetch } from "./serve";
import { stripOrigin } from "./target";
import { useLogger } from "./res-logger";

type Req = IncomingMessage & { url: string };

export interface ForwardOptions<R extends Req = any, Name extends string = string>
  extends Pick<LimitOptions, "maxKeyParts" | "maxKeyPartLength"> {
  /** The actor name, as given to setup({ use }). */
  name: Name;
  /** The actor key for this request. */
  key: (req: R) => string | string[];
  /** The path (and query string) the actor sees; default `req.url`. */
  path?: (req: R) => string;
  /** Params handed to onAuth. */
  params?: (req: R) => unknown;
  /** Input for createState/onCreate when the actor is created by this route. */
  input?: (req: R) => unknown;
  /** How the actor learns who calls (SPEC §4); default "run". */
  auth?: RouteAuth<R>;
  maxBodySize?: number;
}

/**
 * "run": onAuth runs as for the router, with `source: "route"`. "skip": the route itself is the
 * gate; onAuth does not run and `auth` is undefined. A function (may be async): the route has
 * authenticated the user; onAuth does not run and the function's result is the handler's `auth`.
 */
export type RouteAuth<R> = "run" | "skip" | ((req: R) => unknown);

type Next = (err?: unknown) => void;

/** An Express handler that hands the request to the actor (name, key) — get-or-create — and its onFetch. */
export function forwardToActor<R extends Req = any, Use extends Record<string, ActorDefinition> = Record<string, ActorDefinition>>(
  registry: Registry<Use>,
  options: ForwardOptions<R, keyof Use & string>,
) {
  const core = coreOf(registry);
  checkForwardOptions(core, options, "forwardToActor");
  const http = { maxBodySize: options.maxBodySize ?? DEFAULT_MAX_BODY_SIZE };
  const limits = limitsOf(options, "forwardToActor");

  return function forwardToActorHandler(req: R, res: ServerResponse, next: Next) {
    if (req.headers.upgrade?.toLowerCase() === "websocket") {
      next();
      return;
    }
    useLogger(res, core.log);
    let target;
    try {
      target = forwardTarget(options, req, stripOrigin(req.url), "forwardToActor", limits);
    } catch (err) {
      sendError(res, err);
      return;
    }
    serveFetch(core, req, res, target, http).catch(next);
  };
}

/** What forwardToActor and forwardWebSocketToActor share: how a route names its actor. */
export interface ForwardTargetOptions<R> {
  name: string;
  key: (req: R) => string | string[];
  path?: (req: R) => string;
  params?: (req: R) => unknown;
  input?: (req: R) => unknown;
  auth?: RouteAuth<R>;
}

/** Checked once, when the route is set up: a misspelled name fails at startup, not on every request. */
export function checkForwardOptions(core: RegistryCore, options: ForwardTargetOptions<never>, fn: string) {
  if (!options || typeof options.name !== "string" || typeof options.key !== "function") {
    throw new TypeError(`${fn}(): \`name\` (string) and \`key\` (function) are required`);
  }
  if (!Object.prototype.hasOwnProperty.call(core.definitions, options.name)) {
    throw new TypeError(`${fn}(): the registry has no actor named "${options.name}"`);
  }
  const { auth } = options;
  if (auth !== undefined && auth !== "run" && auth !== "skip" && typeof auth !== "function") {
    throw new TypeError(`${fn}(): \`auth\` must be "run", "skip" or a function (req) => authData`);
  }
}

/** The get-or-create target of one forwarded request; throws on a bad key or path. */
export function forwardTarget<R>(options: ForwardTargetOptions<R>, req: R, defaultPath: string, fn: string, limits: KeyLimits) {
  const query = parseQuery({ getOrCreateForKey: { name: options.name, key: options.key(req), input: options.input?.(req) } }, limits);
  const path = options.path ? options.path(req) : defaultPath;
  if (typeof path !== "string") throw errors.invalidRequest(`${fn}(): path(req) must return a string`);
  return { query, params: options.params?.(req), path, authBy: authByOf(options.auth, req) };
}

function authByOf<R>(auth: RouteAuth<R> | undefined, req: R): AuthBy {
  if (typeof auth === "function") return () => auth(req);
  return auth === "skip" ? "skip" : "route";
}
