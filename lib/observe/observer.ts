import type { ActorInstance } from "../actor/instance";
import type { ForwardClaims, HopResult, HopWatch, Lease, LeaseLossCause } from "../cluster/types";
import { ActorError } from "../errors";
import type { ActorMeta } from "../stores/types";
import type { ActorMetrics, HopOutcome, StoreOperation } from "./metrics";
import type { Tracing } from "./tracing";

/** What runActorSocket reports to: the socket's span and its figures. */
export interface SocketWatch {
  /** Runs onWebSocket inside the socket's span. */
  run<T>(fn: () => T): T;
  closed(code: number): void;
}

const seconds = (start: number) => (performance.now() - start) / 1000;

/**
 * A registry's hooks into metrics and tracing. It exists only when one of them is configured, so
 * the call sites test one field and, when observability is off, do nothing else.
 */
export class Observer {
  /** actorId → name of this registry's live actors. */
  private readonly live = new Map<string, string>();

  constructor(
    readonly metrics: ActorMetrics | undefined,
    readonly tracing: Tracing | undefined,
    names: string[],
  ) {
    metrics?.addSource(() => {
      const counts = new Map(names.map((name) => [name, 0]));
      for (const name of this.live.values()) counts.set(name, (counts.get(name) ?? 0) + 1);
      return counts;
    });
  }

  nameOf(actorId: string): string {
    return this.live.get(actorId) ?? "unknown";
  }

  activated(meta: ActorMeta) {
    this.live.set(meta.actorId, meta.name);
    this.metrics?.activated(meta.name);
  }

  /** Evicted: asleep, stopped by a shutdown (not counted), or because its cluster lease was lost. */
  stopped(meta: ActorMeta, reason: "sleep" | "shutdown" | LeaseLossCause) {
    this.live.delete(meta.actorId);
    if (reason === "sleep") this.metrics?.slept(meta.name);
    else if (reason !== "shutdown") this.metrics?.leaseLost(meta.name, reason);
  }

  leaseAcquired(actor: string, lease: Lease) {
    this.metrics?.leaseAcquired(actor, lease.takeover === true);
  }

  /**
   * One forwarding hop (a relayed socket's handshake when `socket`): `send` runs inside the hop's
   * span (so HTTP instrumentation nests its client span there) with the watch the cluster reports
   * the hop's end to.
   */
  forward<T>(request: Request, claims: ForwardClaims, send: (watch: HopWatch) => T, socket = false): T {
    const start = performance.now();
    const span = this.tracing?.forward(request, claims);
    let ended = false;
    const watch: HopWatch = {
      headers: span?.headers,
      done: (result: HopResult) => {
        if (ended) return;
        ended = true;
        const answered = typeof result === "number";
        // A stale hop is not counted: the request's next hop is (or its service here).
        if (result !== "stale") {
          if (socket) this.metrics?.relayed(claims.name, answered ? "opened" : result);
          else this.metrics?.forwarded(claims.name, answered ? statusClass(result) : result, answered ? seconds(start) : undefined);
        }
        span?.end(result);
      },
    };
    return span ? span.run(() => send(watch)) : send(watch);
  }

  /** onFetch and the save after it, timed and traced; the status is the response's or the error's. */
  async fetch(instance: ActorInstance, request: Request, auth: unknown): Promise<Response> {
    const start = performance.now();
    let status = 500;
    try {
      const run = () => instance.fetch(request, auth);
      const response = await (this.tracing ? this.tracing.fetch(instance.meta, request, run) : run());
      status = response.status;
      return response;
    } catch (err) {
      if (err instanceof ActorError) status = err.status;
      throw err;
    } finally {
      this.metrics?.fetched(instance.meta.name, status, seconds(start));
    }
  }

  socket(instance: ActorInstance, request: Request): SocketWatch {
    const { name } = instance.meta;
    const start = performance.now();
    this.metrics?.socketOpened(name);
    const span = this.tracing?.socket(instance.meta, request);
    return {
      run: (fn) => (span ? span.run(fn) : fn()),
      closed: (code) => {
        this.metrics?.socketClosed(name, code, seconds(start));
        span?.end(code);
      },
    };
  }

  async save(actorId: string, state: string, write: () => Promise<void>): Promise<void> {
    const actor = this.nameOf(actorId);
    const start = performance.now();
    try {
      await (this.tracing ? this.tracing.save(actor, actorId, write) : write());
    } catch (err) {
      const fenced = isFenced(err);
      this.metrics?.saveFailed(actor, fenced);
      if (!fenced) this.metrics?.storeFailed("save");
      throw err;
    }
    this.metrics?.saved(actor, Buffer.byteLength(state), seconds(start));
  }

  storeFailed(operation: StoreOperation, err: unknown) {
    if (!isFenced(err)) this.metrics?.storeFailed(operation);
  }
}

function statusClass(status: number): HopOutcome {
  return `${Math.floor(status / 100)}xx` as HopOutcome;
}

export function isFenced(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === "fenced";
}
