import type { ActorQuery } from "../registry/query";
import { actorPath } from "../protocol";
import { withoutInternal } from "./headers";

/** How a client reaches actors: over HTTP (createClient) or in process (createServerClient). */
export interface Transport {
  fetch(query: ActorQuery, params: unknown, path: string, base: Request | undefined, init: RequestInit | undefined): Promise<Response>;
  resolve(query: ActorQuery, params: unknown): Promise<string>;
  websocket(query: ActorQuery, params: unknown, path: string, protocols: string[]): Promise<WebSocket>;
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
  /**
   * Opens a WebSocket to the actor's onWebSocket. Resolves at once with a socket that may still be
   * CONNECTING; a refusal closes it with the code of SPEC §5 and reason = the error code.
   */
  websocket(path?: string, protocols?: string | string[]): Promise<WebSocket>;
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

const BODYLESS = new Set(["GET", "HEAD"]);

/**
 * What `fetch(request, init)` would send, for both transports: init's method, headers, body and
 * signal win over the Request's (init.headers replaces, as in `new Request(request, init)`), and a
 * Request's body is dropped when the method becomes GET or HEAD. X-RivetKit-* headers are the
 * transport's own, so a caller's are removed.
 */
export function mergeInit(base: Request | undefined, init: RequestInit = {}): RequestInit & { method: string; headers: Headers } {
  const method = (init.method ?? base?.method ?? "GET").toUpperCase();
  const headers = withoutInternal(new Headers(init.headers ?? base?.headers));
  let body = init.body;
  if (body === undefined && base?.body && !BODYLESS.has(method)) body = base.body;
  const merged: RequestInit & { method: string; headers: Headers; duplex?: "half" } = {
    ...init,
    method,
    headers,
    body,
    signal: init.signal ?? base?.signal,
  };
  // Node's fetch and Request insist on this for a stream body.
  if (typeof ReadableStream !== "undefined" && body instanceof ReadableStream) merged.duplex = "half";
  return merged;
}

function splitInput(input: string | URL | Request): { path: string; base: Request | undefined } {
  if (typeof input === "string") {
    // A fragment never reaches a server; the in-process transport must not see it either.
    const hash = input.indexOf("#");
    return { path: actorPath(hash === -1 ? input : input.slice(0, hash)), base: undefined };
  }
  if (input instanceof URL) return { path: actorPath(input.pathname + input.search), base: undefined };
  if (typeof Request !== "undefined" && input instanceof Request) {
    const url = new URL(input.url);
    return { path: actorPath(url.pathname + url.search), base: input };
  }
  throw new TypeError("fetch(): input must be a path string, a URL or a Request");
}

function handle(transport: Transport, query: ActorQuery, params: unknown): ActorHandle {
  return {
    // async: a bad input rejects, as fetch does, instead of throwing.
    async fetch(input, init) {
      const { path, base } = splitInput(input);
      return transport.fetch(query, params, path, base, init);
    },
    resolve() {
      return transport.resolve(query, params);
    },
    async websocket(path = "/", protocols = []) {
      return transport.websocket(query, params, actorPath(path), typeof protocols === "string" ? [protocols] : [...protocols]);
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
