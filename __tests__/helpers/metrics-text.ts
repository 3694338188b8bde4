import { memoryStore, type StateStore } from "express-actors";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition (what prom-client's `registry.metrics()` and `/metrics` serve). */
export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key] = value;
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

/** The value of the one sample named `name` whose labels include `labels`; undefined when there is none. */
export function sampleValue(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} samples match ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

type Operation = "createIfAbsent" | "lookupKey" | "lookupId" | "load" | "save" | "delete";

/** memoryStore whose next call of an operation can be made to reject with a given error. */
export class FlakyStore implements StateStore {
  private readonly inner = memoryStore();
  private readonly failures = new Map<Operation, Error[]>();

  failNext(operation: Operation, err: Error) {
    this.failures.set(operation, [...(this.failures.get(operation) ?? []), err]);
  }

  private async run<T>(operation: Operation, call: () => Promise<T>): Promise<T> {
    const err = this.failures.get(operation)?.shift();
    if (err) throw err;
    return call();
  }

  createIfAbsent: StateStore["createIfAbsent"] = (meta) => this.run("createIfAbsent", () => this.inner.createIfAbsent(meta));
  lookupKey: StateStore["lookupKey"] = (name, key) => this.run("lookupKey", () => this.inner.lookupKey(name, key));
  lookupId: StateStore["lookupId"] = (actorId) => this.run("lookupId", () => this.inner.lookupId(actorId));
  load: StateStore["load"] = (actorId, options) => this.run("load", () => this.inner.load(actorId, options));
  save: StateStore["save"] = (actorId, state, options) => this.run("save", () => this.inner.save(actorId, state, options));
  delete: StateStore["delete"] = (actorId) => this.run("delete", () => this.inner.delete(actorId));
}

/** An error as the durable stores reject a fenced save with (SPEC §8). */
export function fencedError(): Error {
  return Object.assign(new Error("fenced: a newer owner has saved this actor"), { code: "fenced" });
}
