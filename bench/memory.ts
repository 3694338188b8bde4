// Heap and RSS per idle actor: activate N actors with a tiny state through createServerClient
// (default memoryStore, default sleepTimeout), let them go idle, and compare with the heap before.
// Needs `node --expose-gc`. Usage: memory.ts <n>
import { actor, setup } from "express-actors";
// The compiled registry internals, the same module instance "express-actors" resolves to here.
import { coreOf } from "../dist/registry/setup";
import { msSince, sendToRunner } from "./common";

const n = Number(process.argv[2]);
const BATCH = 500;

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("memory.ts needs node --expose-gc");

const registry = setup({
  use: { idle: actor({ state: { count: 0 }, onFetch: () => new Response(null, { status: 204 }) }) },
});
const client = registry.createServerClient();

async function activate(from: number, to: number) {
  for (let i = from; i < to; i += BATCH) {
    const batch = [];
    for (let k = i; k < Math.min(to, i + BATCH); k++) batch.push(client.idle.getOrCreate([`actor-${k}`]).fetch("/"));
    for (const response of await Promise.all(batch)) {
      if (response.status !== 204) throw new Error(`activation answered HTTP ${response.status}`);
    }
  }
}

/** Several passes with turns in between, so that finalizers and weak references settle too. */
async function settledMemory() {
  for (let i = 0; i < 4; i++) {
    gc!();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage();
}

async function main() {
  // A first batch loads and optimizes the code paths, so the baseline excludes one-time costs.
  await activate(-BATCH, 0);
  const before = await settledMemory();
  const start = process.hrtime.bigint();
  await activate(0, n);
  const activationMs = msSince(start);
  const after = await settledMemory();
  await sendToRunner({
    type: "memory",
    live: coreOf(registry).size - BATCH,
    heapPerActor: (after.heapUsed - before.heapUsed) / n,
    rssPerActor: (after.rss - before.rss) / n,
    activationMs,
  });
  // Not registry.shutdown(): saving 100,000 idle actors is not what is being measured.
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
