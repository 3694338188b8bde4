import type { IncomingMessage, ServerResponse } from "node:http";
import type { ActorDefinition } from "../actor/definition";
import { errors } from "../errors";
import { parseQuery } from "../registry/query";
import { coreOf, type Registry } from "../registry/setup";
import { DEFAULT_MAX_BODY_SIZE } from "./middleware";
import { sendError } from "./response";
import { serveFetch, splitHeaders } from "./serve";

type Req = IncomingMessage & { url: string };

export interface ForwardOptions<R extends Req = any, Name extends string = string> {
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
  /** "run" (default): onAuth runs as for the router. "skip": the route itself is the gate. */
  auth?: "run" | "skip";
  maxBodySize?: number;
}

type Next = (err?: unknown) => void;

/** An Express handler that hands the request to the actor (name, key) — get-or-create — and its onFetch. */
export function forwardToActor<R extends Req = any, Use extends Record<string, ActorDefinition> = Record<string, ActorDefinition>>(
  registry: Registry<Use>,
  options: ForwardOptions<R, keyof Use & string>,
) {
  const core = coreOf(registry);
  if (!options || typeof options.name !== "string" || typeof options.key !== "function") {
    throw new TypeError("forwardToActor(): `name` (string) and `key` (function) are required");
  }
  // A misspelled name fails at startup rather than as a 404 on every request.
  if (!Object.prototype.hasOwnProperty.call(core.definitions, options.name)) {
    throw new TypeError(`forwardToActor(): the registry has no actor named "${options.name}"`);
  }
  const http = { maxBodySize: options.maxBodySize ?? DEFAULT_MAX_BODY_SIZE };
  const skipAuth = options.auth === "skip";

  return function forwardToActorHandler(req: R, res: ServerResponse, next: Next) {
    if (req.headers.upgrade?.toLowerCase() === "websocket") {
      next();
      return;
    }
    let target;
    let headers;
    try {
      headers = splitHeaders(req).headers;
      const key = options.key(req);
      const query = parseQuery({
        getOrCreateForKey: { name: options.name, key, input: options.input?.(req) },
      });
      const path = options.path ? options.path(req) : req.url;
      if (typeof path !== "string") throw errors.invalidRequest("forwardToActor(): path(req) must return a string");
      target = { query, params: options.params?.(req), path, skipAuth };
    } catch (err) {
      sendError(res, err);
      return;
    }
    serveFetch(core, req, res, headers, target, http).catch(next);
  };
}
