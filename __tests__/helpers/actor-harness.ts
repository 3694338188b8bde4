import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import express from "express";
import { actorMiddleware, memoryStore, type Registry, type StateStore } from "express-actors";

export type QueryKind = "getForKey" | "getOrCreateForKey" | "create";

/** The X-RivetKit-Actor-Query header value for (name, key). */
export function actorQuery(name: string, key: string[], kind: QueryKind = "getOrCreateForKey", input?: unknown): string {
  return JSON.stringify({ [kind]: input === undefined ? { name, key } : { name, key, input } });
}

export const RAW = "/registry/actors/raw/http";

/** An Express 5 app with the registry's router mounted at /registry. */
export function mountRegistry(registry: Registry<any>) {
  const app = express();
  app.use("/registry", actorMiddleware(registry));
  return app;
}

export interface Deferred<T = void> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it holds; fails with `what` after `timeoutMs`. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await delay(10);
  }
}

/** A store wrapping memoryStore (or `inner`) whose saves can be made to fail, stall or record. */
export class TestStore implements StateStore {
  /** Every successful save, in order. */
  readonly saves: Array<{ actorId: string; state: string }> = [];
  saveAttempts = 0;
  closed = false;
  /** Extra latency on every call, to widen race windows. */
  latencyMs = 0;
  private failures = 0;
  private failing = false;
  private gate?: Deferred;
  private started?: Deferred;

  constructor(readonly inner: StateStore = memoryStore()) {}

  /** The next `n` saves reject. */
  failNext(n: number) {
    this.failures = n;
  }

  /** Every save rejects until `setFailing(false)`. */
  setFailing(on: boolean) {
    this.failing = on;
  }

  /** Holds every save until the returned `release()`; `started` settles when one is waiting. */
  hold(): { started: Promise<void>; release(): void } {
    const gate = (this.gate = deferred());
    const started = (this.started = deferred());
    return {
      started: started.promise,
      release: () => {
        if (this.gate === gate) this.gate = undefined;
        gate.resolve();
      },
    };
  }

  /** The parsed state the inner store holds for `actorId`. */
  async stored(actorId: string): Promise<unknown> {
    const text = await this.inner.load(actorId);
    return text === undefined ? undefined : JSON.parse(text);
  }

  private async pause() {
    if (this.latencyMs) await delay(this.latencyMs);
  }

  async createIfAbsent(meta: Parameters<StateStore["createIfAbsent"]>[0]) {
    await this.pause();
    return this.inner.createIfAbsent(meta);
  }
  async lookupKey(name: string, key: string[]) {
    await this.pause();
    return this.inner.lookupKey(name, key);
  }
  async lookupId(actorId: string) {
    await this.pause();
    return this.inner.lookupId(actorId);
  }
  async load(actorId: string) {
    await this.pause();
    return this.inner.load(actorId);
  }
  async save(actorId: string, state: string) {
    this.saveAttempts++;
    await this.pause();
    if (this.gate) {
      this.started?.resolve();
      await this.gate.promise;
    }
    if (this.failing || this.failures > 0) {
      if (this.failures > 0) this.failures--;
      throw new Error("disk on fire");
    }
    await this.inner.save(actorId, state);
    this.saves.push({ actorId, state });
  }
  async delete(actorId: string) {
    return this.inner.delete(actorId);
  }
  async close() {
    this.closed = true;
  }
}

/** Silences console.error and records each call as one string, so tests can assert what was logged. */
export function captureErrorLog(): { lines: string[]; restore(): void } {
  const lines: string[] = [];
  const spy = jest.spyOn(console, "error").mockImplementation((...args: unknown[]) => {
    lines.push(args.map((a) => (a instanceof Error ? a.message : String(a))).join(" "));
  });
  return { lines, restore: () => spy.mockRestore() };
}

/** A fresh directory under the OS temp dir; `cleanup` removes it. */
export async function tempDir(prefix = "express-actors-"): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
