import type { ActorQuery } from "../registry/query";
import { normalizePath } from "../protocol";

/** How a client reaches actors: over HTTP (createClient) or in process (createServerClient). */
export interface Transport {
  fetch(query: ActorQuery, params: unknown, path: string, base: Request | undefined, init: RequestInit | undefined): Promise<Response>;
  resolve(query: ActorQuery, params: unknown): Promise<string>;
}

export type ActorKey = string | string[];

export interface HandleOptions {
  /** Connection params handed to the actor's onAuth. */
  params?: unknown;
}

export interface CreateOptions extends HandleOptions {
  /** Input handed to createState and onCreate when the actor is created. */
  input?: unknown;
}

export interface ActorHandle {
  /** Sends a request to the actor's onFetch; router errors come back as non-OK Responses. */
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;
  /** The actor's id; rejects with code `actor_not_found` when no actor matches. */
  resolve(): Promise<string>;
}

export interface ActorAccessor {
  get(key?: ActorKey, opts?: HandleOptions): ActorHandle;
  getOrCreate(key?: ActorKey, opts?: CreateOptions): ActorHandle;
  /** Creates the actor; rejects with code `actor_already_exists` when the key is taken. */
  create(key?: ActorKey, opts?: CreateOptions): Promise<ActorHandle>;
  getForId(actorId: string, opts?: HandleOptions): ActorHandle;
}

/** The registry's phantom type parameter carries its actor names to the client's type. */
export interface RegistryLike<Use> {
  readonly __actors?: Use;
}

export type Client<R> = R extends RegistryLike<infer Use>
  ? { readonly [K in keyof Use]: ActorAccessor }
  : Record<string, ActorAccessor>;

function toKey(key: ActorKey | undefined): string[] {
  if (key === undefined) return [];
  return typeof key === "string" ? [key] : key;
}

function splitInput(input: string | URL | Request): { path: string; base: Request | undefined } {
  if (typeof input === "string") return { path: normalizePath(input), base: undefined };
  if (input instanceof URL) return { path: normalizePath(input.pathname + input.search), base: undefined };
  if (typeof Request !== "undefined" && input instanceof Request) {
    const url = new URL(input.url);
    return { path: normalizePath(url.pathname + url.search), base: input };
  }
  throw new TypeError("fetch(): input must be a path string, a URL or a Request");
}

function handle(transport: Transport, query: ActorQuery, params: unknown): ActorHandle {
  return {
    fetch(input, init) {
      const { path, base } = splitInput(input);
      return transport.fetch(query, params, path, base, init);
    },
    resolve() {
      return transport.resolve(query, params);
    },
  };
}

function accessor(transport: Transport, name: string): ActorAccessor {
  return {
    get: (key, opts) => handle(transport, { getForKey: { name, key: toKey(key) } }, opts?.params),
    getOrCreate: (key, opts) =>
      handle(transport, { getOrCreateForKey: { name, key: toKey(key), input: opts?.input } }, opts?.params),
    async create(key, opts) {
      const actorId = await transport.resolve({ create: { name, key: toKey(key), input: opts?.input } }, opts?.params);
      return handle(transport, { getForId: { name, actorId } }, opts?.params);
    },
    getForId: (actorId, opts) => handle(transport, { getForId: { name, actorId } }, opts?.params),
  };
}

/** A client whose properties are actor names; `then` and symbols stay undefined so it is not a thenable. */
export function buildClient(transport: Transport): Record<string, ActorAccessor> {
  const cache = new Map<string, ActorAccessor>();
  return new Proxy({} as Record<string, ActorAccessor>, {
    get(_target, prop) {
      if (typeof prop !== "string" || prop === "then") return undefined;
      let found = cache.get(prop);
      if (!found) cache.set(prop, (found = accessor(transport, prop)));
      return found;
    },
  });
}
