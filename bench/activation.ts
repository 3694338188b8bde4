// Activation cost, in process through createServerClient (no HTTP): the time of
// `getOrCreate([newKey]).fetch("/")` for new actors (cold: create the record, activate, first
// state save) vs the same call on the same, now running, actors (warm), one call at a time.
// Usage: activation.ts memory|file|sqlite|postgres|redis <n> <budgetMs>
import { actor, setup } from "express-actors";
import { msSince, sendToRunner, summarize } from "./common";
import { benchStore } from "./stores";

const [storeKind, nArg, budgetArg] = process.argv.slice(2);
const n = Number(nArg);
const budgetMs = Number(budgetArg);
const WARMUP = 200;

const registry = setup({
  use: { counter: actor({ state: { count: 0 }, onFetch: () => new Response("ok") }) },
  store: benchStore(storeKind),
});
const client = registry.createServerClient();

/** One request, body read, so the actor is released exactly as a real caller would release it. */
async function timedFetch(key: string): Promise<number> {
  const start = process.hrtime.bigint();
  const response = await client.counter.getOrCreate([key]).fetch("/");
  await response.text();
  if (!response.ok) throw new Error(`HTTP ${response.status} for ${key}`);
  return msSince(start);
}

async function main() {
  // Unmeasured rounds first, so that both series run optimized code.
  for (let i = 0; i < WARMUP; i++) await timedFetch(`warmup-${i}`);
  for (let i = 0; i < WARMUP; i++) await timedFetch(`warmup-${i}`);

  const cold: number[] = [];
  const deadline = Date.now() + budgetMs;
  while (cold.length < n && Date.now() < deadline) cold.push(await timedFetch(`key-${cold.length}`));
  const warm: number[] = [];
  for (let i = 0; i < cold.length; i++) warm.push(await timedFetch(`key-${i}`));

  await sendToRunner({ type: "activation", cold: summarize(cold), warm: summarize(warm), budgetHit: cold.length < n });
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
