import type { ActorInstance } from "../actor/instance";
import { ActorError } from "../errors";
import type { ActorMeta } from "../stores/types";
import type { ActorMetrics, StoreOperation } from "./metrics";
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

  /** Evicted: asleep, or stopped by a shutdown (not counted as a sleep). */
  stopped(meta: ActorMeta, shuttingDown: boolean) {
    this.live.delete(meta.actorId);
    if (!shuttingDown) this.metrics?.slept(meta.name);
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

export function isFenced(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === "fenced";
}
