// Shared by the runner (run.ts) and its child processes: the IPC messages and the statistics.

export interface Summary {
  n: number;
  p50: number;
  p99: number;
}

/** What the children send the runner over IPC. */
export type ChildMessage =
  | { type: "ready"; port: number }
  | { type: "cpu"; micros: number }
  | { type: "activation"; cold: Summary; warm: Summary; budgetHit: boolean }
  | { type: "memory"; live: number; heapPerActor: number; rssPerActor: number; activationMs: number }
  | { type: "heap"; heapUsed: number; rss: number };

/** Nearest-rank percentiles; sorts `values` in place. */
export function summarize(values: number[]): Summary {
  values.sort((a, b) => a - b);
  const at = (p: number) => (values.length ? values[Math.max(0, Math.ceil((p / 100) * values.length) - 1)] : NaN);
  return { n: values.length, p50: at(50), p99: at(99) };
}

/** Resolves once the message is handed to the IPC channel, so that a process.exit() right after cannot drop it. */
export function sendToRunner(message: ChildMessage): Promise<void> {
  const send = process.send?.bind(process);
  if (!send) throw new Error("run this file through bench/run.ts (it needs the runner's IPC channel)");
  return new Promise((resolve, reject) => send(message, undefined, undefined, (err) => (err ? reject(err) : resolve())));
}

/** Milliseconds elapsed since a process.hrtime.bigint() reading. */
export const msSince = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;
