import type { Logger } from "../log";
import { serializeState } from "./state";

/** The context handed to every hook and handler of an actor. */
export interface ActorContext<S = any, V = any> {
  /** Persisted JSON state; changes are tracked and saved (SPEC §6). */
  state: S;
  /** Per-activation values from createVars; never persisted. */
  readonly vars: V;
  readonly name: string;
  readonly key: string[];
  readonly actorId: string;
  /** Resolves once the current state is durable; `immediate` skips waiting for a pending throttled save. */
  saveState(opts?: { immediate?: boolean }): Promise<void>;
  /** Puts the actor to sleep as soon as it is idle. */
  sleep(): void;
  readonly log: Logger;
  /** An in-process client for calling other actors (skips onAuth). */
  client(): any;
}

/**
 * Where a request reached onAuth from: "router" (anyone can send any params), "route" (a forwarded
 * route's own `params(req)`), or "gateway" (RivetKit's client protocol, SPEC §10).
 */
export type AuthSource = "router" | "route" | "gateway";

export interface AuthArgs<P = unknown> {
  request: Request;
  intents: Set<"get" | "create" | "fetch" | "websocket">;
  params: P;
  source: AuthSource;
}

export interface ActorOptions {
  /** Max delay before a change made outside a request (listener, timer) is saved. Default 1000 ms. */
  stateSaveInterval?: number;
  /** Idle time before the actor is stopped and evicted. Default 30 s. */
  sleepTimeout?: number;
}

type MaybePromise<T> = T | Promise<T>;

export interface ActorConfig<S, V, I, A> {
  state?: S;
  // The context does not mention S, so S is inferred from the return value alone.
  createState?: (c: ActorContext<unknown, undefined>, input: I | undefined) => MaybePromise<S>;
  createVars?: (c: ActorContext<NoInfer<S>, undefined>) => MaybePromise<V>;
  onCreate?: (c: ActorContext<S, V>, input: I | undefined) => MaybePromise<void>;
  onStart?: (c: ActorContext<S, V>) => MaybePromise<void>;
  onStop?: (c: ActorContext<S, V>) => MaybePromise<void>;
  onStateChange?: (c: ActorContext<S, V>, state: S) => void;
  onAuth?: (args: AuthArgs, params: unknown) => MaybePromise<A>;
  onFetch?: (c: ActorContext<S, V>, request: Request, opts: { auth: A | undefined }) => MaybePromise<Response>;
  onWebSocket?: (
    c: ActorContext<S, V>,
    websocket: WebSocket,
    opts: { request: Request; auth: A | undefined },
  ) => MaybePromise<void>;
  options?: ActorOptions;
}

export interface ActorDefinition<S = any, V = any, I = any, A = any> {
  readonly config: ActorConfig<S, V, I, A>;
}

/** Defines an actor; register it with `setup({ use: { name: definition } })`. */
export function actor<S = undefined, V = undefined, I = unknown, A = unknown>(
  config: ActorConfig<S, V, I, A>,
): ActorDefinition<S, V, I, A> {
  if (!config || typeof config !== "object") throw new TypeError("actor(): expected a definition object");
  if (config.state !== undefined && config.createState) {
    throw new TypeError("actor(): give either `state` or `createState`, not both");
  }
  // Fail at definition time, naming the path, rather than at the first activation.
  if (config.state !== undefined) serializeState(config.state);
  for (const hook of [
    "createState", "createVars", "onCreate", "onStart", "onStop", "onStateChange", "onAuth", "onFetch", "onWebSocket",
  ] as const) {
    if (config[hook] !== undefined && typeof config[hook] !== "function") {
      throw new TypeError(`actor(): ${hook} must be a function`);
    }
  }
  return { config };
}
