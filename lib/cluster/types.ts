import type { IncomingMessage, ServerResponse } from "node:http";
import { ActorError } from "../errors";
import type { Logger } from "../log";
import type { ActorMeta } from "../stores/types";
import type { SocketDriver, W3CWebSocket } from "../websocket/socket";

/** The client's side of a relayed socket, as the edge accepted it. */
export interface RelayedSocket {
  socket: W3CWebSocket;
  driver: SocketDriver;
}

/** This node's ownership of one actor: the fencing epoch it loads and saves with. */
export interface Lease {
  readonly epoch: number;
  /** False once the lease can no longer be trusted: lost, or not renewed in time. */
  valid(): boolean;
  /** The previous lease on this actor was another node's and was never released (it expired). */
  readonly takeover?: boolean;
}

/**
 * Why a lease was lost: `expired`, Redis no longer held it at renewal; `lapsed`, this node could not
 * renew it in time; `fenced`, the store refused a save because a newer owner had loaded the actor.
 */
export type LeaseLossCause = "expired" | "lapsed" | "fenced";

/**
 * How a forwarding hop ended: the owner's status (101 for a relayed socket), or no answer (owner
 * down, or the client or a shutdown ended it first), or `stale`: the owner the edge remembered no
 * longer serves the actor, and the edge placed the request again.
 */
export type HopResult = number | "unreachable" | "cancelled" | "stale";

/** The registry's view of one forwarding hop (metrics, and the trace context it carries). */
export interface HopWatch {
  /** Added to the forwarded request: `traceparent` when tracing is on. */
  readonly headers?: Record<string, string>;
  /** Called once, when the owner's response head arrives or the hop fails. */
  done(result: HopResult): void;
}

/**
 * Why a hop was not served: `unserved`, the owner refused it before any actor saw it (it no longer
 * runs the actor); `unconnected`, the owner could not be connected to, so nothing was sent; `failed`,
 * anything else (the request may have run there).
 */
export type HopRefusal = "unserved" | "unconnected" | "failed";

/** The node that holds an actor's lease, as another node sees it. */
export interface Owner {
  nodeId: string;
  /** Its advertised mount URL; undefined when it has left the membership. */
  url: string | undefined;
  /** Seconds until its lease expires unless renewed: the Retry-After of owner_unreachable. */
  retryAfter: number;
  /**
   * performance.now() before which the lease seen cannot have expired (only been let go): how long
   * an edge may send the actor's requests here without asking again. Undefined: ask every time.
   */
  until?: number;
}

/** What a forwarding hop carries to the owner, signed (see ./signing). */
export interface ForwardClaims {
  actorId: string;
  name: string;
  /** The auth data the edge's onAuth (or the route's auth) produced. */
  auth: unknown;
  /** The origin the client used, so request.url is the same on every node. */
  origin: string;
  method: string;
  /** Path and query string as the actor sees them. */
  path: string;
  /** Set when the edge served RivetKit's gateway (SPEC §10): the owner answers in its protocol. */
  via?: "gateway";
  /** Set on a relayed WebSocket: such a token opens a socket and never serves an HTTP request, nor the reverse. */
  socket?: true;
  /** Sent where the actor was last seen, by an edge that can place it again: served only if running there. */
  remembered?: true;
}

export interface ClusterHost {
  /** The lease of `actorId` is gone (not renewed in time, or taken): stop serving it. */
  leaseLost(actorId: string, lease: Lease, cause: LeaseLossCause): void;
  /** The registry's logger (its lines carry `node`); the cluster logs through it. */
  readonly log?: Logger;
}

/**
 * A coordinator of several processes (SPEC §9), as `setup({ cluster })` takes it. Made by
 * `redisCluster()` from `express-actors/cluster/redis`; the registry never loads it otherwise.
 */
export interface Cluster {
  /** This node as its log lines name it (`node`): its advertised URL. */
  readonly node?: string;
  attach(host: ClusterHost): void;
  /** Takes the actor's lease, or says who holds it; rejects with cluster_unavailable. */
  claim(actorId: string): Promise<{ lease: Lease } | { owner: Owner }>;
  /** Gives the lease up at once (sleep, shutdown); never throws. */
  release(actorId: string, lease: Lease): void;
  /** Whether this node can currently confirm leases. */
  healthy(): boolean;
  /**
   * Proxies `req` to the owner; `body` is the request body when a parser has already read it.
   * `refused` hears of a hop the owner did not serve; when it returns true it has taken the request
   * over, and the hop answers nothing.
   */
  forwardHttp(
    req: IncomingMessage,
    res: ServerResponse,
    owner: Owner,
    claims: ForwardClaims,
    body?: Uint8Array,
    watch?: HopWatch,
    refused?: (why: HopRefusal) => boolean,
  ): void;
  /** The same hop for the server-side client; a `refused` that returns a response makes it the answer. */
  forwardFetch(
    request: Request,
    owner: Owner,
    claims: ForwardClaims,
    watch?: HopWatch,
    refused?: (why: HopRefusal) => Promise<Response> | undefined,
  ): Promise<Response>;
  /**
   * Relays an accepted socket (its W3C surface, events still held) to the owner's socket route, until
   * either end closes; `closers` is where the registry's shutdown finds it.
   */
  forwardSocket(
    client: RelayedSocket,
    request: Request,
    owner: Owner,
    claims: ForwardClaims,
    closers: Set<() => void>,
    watch?: HopWatch,
    /** Called when the owner could not be reached or let the socket go with 1012: it may own the actor no more. */
    gone?: () => void,
  ): void;
  /** The claims of a valid, unexpired signature; undefined for anything else. */
  verify(token: string | undefined): ForwardClaims | undefined;
  close(): Promise<void>;
}

/** Thrown by the registry when another node owns the actor: the caller forwards, or refuses. */
export class OwnedElsewhere extends ActorError {
  constructor(
    readonly owner: Owner,
    readonly meta: ActorMeta,
    readonly auth?: unknown,
    /** The owner as this node last found it, not asked again: it may have let go since. */
    readonly remembered = false,
  ) {
    super(503, "service_restart", "This actor is served by another node");
    this.retryAfter = 0;
  }

  /** Routing, not a failure: made without a stack trace, which would cost more than the rest of the decision. */
  static of(owner: Owner, meta: ActorMeta, auth?: unknown, remembered = false): OwnedElsewhere {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      return new OwnedElsewhere(owner, meta, auth, remembered);
    } finally {
      Error.stackTraceLimit = limit;
    }
  }
}
