/**
 * SPEC §11: the bounds on what a client sends that have no other home, with their defaults.
 * Options of actorMiddleware and, where they apply, of the forward helpers (docs/api.md#limits).
 */
export interface LimitOptions {
  /** Longest actor query, in characters (X-RivetKit-Actor-Query, or the decoded `query.` entry). Default 16 KiB. */
  maxQuerySize?: number;
  /** Longest conn params, in characters (X-RivetKit-Conn-Params, or the decoded `conn_params.` entry). Default 16 KiB. */
  maxConnParamsSize?: number;
  /** Most parts in an actor key. Default 64. */
  maxKeyParts?: number;
  /** Longest part of an actor key, in characters (UTF-16 code units). Default 1024. */
  maxKeyPartLength?: number;
  /** Most open WebSockets per actor; one more closes with 1013 `too_many_sockets`. Default 10,000. */
  maxSocketsPerActor?: number;
  /** Messages held per socket before onWebSocket's setup returns; past it the socket stops reading. Default 1,000. */
  maxPendingWebSocketMessages?: number;
  /** Bytes held per socket before onWebSocket's setup returns; past it the socket stops reading. Default 1 MiB. */
  maxPendingWebSocketBytes?: number;
}

export type Limits = Required<LimitOptions>;

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxQuerySize: 16 * 1024,
  maxConnParamsSize: 16 * 1024,
  maxKeyParts: 64,
  maxKeyPartLength: 1024,
  maxSocketsPerActor: 10_000,
  maxPendingWebSocketMessages: 1000,
  maxPendingWebSocketBytes: 1024 * 1024,
});

/** The limits an options object sets, defaults for the rest; a bad value throws when the route is set up. */
export function limitsOf(options: LimitOptions, fn: string): Limits {
  const limits = { ...DEFAULT_LIMITS };
  for (const name of Object.keys(DEFAULT_LIMITS) as Array<keyof Limits>) {
    const value = options[name];
    if (value === undefined) continue;
    if (value !== Infinity && !(Number.isSafeInteger(value) && value > 0)) {
      throw new TypeError(`${fn}(): ${name} must be a positive integer or Infinity`);
    }
    limits[name] = value;
  }
  return limits;
}
