// `npm run bench`: HTTP, WebSocket, activation, memory and persistence in one run, printed as one
// markdown table (also written to bench/RESULTS.md) followed by the bar checks.
//   --quick    shorter cases, 10,000 actors only, RESULTS.md left alone (`npm run bench:quick`)
//   --profile  also run the router case under `node --cpu-prof` and summarize its hot functions
// A FAIL is a measurement, not an error: the exit code is non-zero only when a case could not run.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Child, pinLoadGenerator } from "./children";
import { httpLoad, wsLoad, type Measured, type Timing } from "./load";
import { summarizeProfile } from "./profile-summary";

const quick = process.argv.includes("--quick");
const profile = process.argv.includes("--profile");
const timing: Timing = quick ? { warmupS: 0.5, durationS: 2 } : { warmupS: 1, durationS: 5 };
const ACTIVATIONS = quick ? 500 : 2000;
/** Cap on the cold series, for a slow disk under fileStore; the row shows how many were done. */
const ACTIVATION_BUDGET_MS = quick ? 5000 : 15_000;
const MEMORY_ACTORS = quick ? [10_000] : [10_000, 100_000];
const SOCKET_COUNTS = [1, 50];
const BAR_SOCKETS = 50;

const routerQuery = (name: string, key: string) => JSON.stringify({ getOrCreateForKey: { name, key: [key] } });
const routerHeaders = (name: string, key: string) => ({ "x-rivetkit-actor-query": routerQuery(name, key) });

interface Row {
  benchmark: string;
  case: string;
  result: string;
  ratio: string;
  p50: string;
  p99: string;
}

const rows: Row[] = [];
const failures: string[] = [];

const ms = (v: number) => (Number.isNaN(v) ? "–" : `${v < 1 ? v.toFixed(3) : v < 10 ? v.toFixed(2) : v.toFixed(1)} ms`);
const count = (v: number) => Math.round(v).toLocaleString("en-US");
const times = (v: number) => `${v.toFixed(2)}×`;
const kib = (bytes: number) => `${(bytes / 1024).toFixed(2)} KiB`;

/** Runs one case; a failure becomes a row saying so, and the rest of the run goes on. */
async function attempt<T>(benchmark: string, label: string, run: () => Promise<T>): Promise<T | undefined> {
  process.stderr.write(`${benchmark}: ${label}…\n`);
  try {
    return await run();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    failures.push(`${benchmark} / ${label}: ${message}`);
    rows.push({ benchmark, case: label, result: `FAILED: ${message}`, ratio: "", p50: "", p99: "" });
    return undefined;
  }
}

/** A fresh server process per case, so no case inherits another's heap, JIT state or actors. */
async function withServer<T>(store: "memory" | "file", use: (base: string) => Promise<T>, nodeArgs: string[] = []) {
  const server = new Child("server.ts", [store], nodeArgs);
  try {
    const { port } = await server.message("ready", 30_000);
    return await use(`127.0.0.1:${port}`);
  } finally {
    await server.stop();
  }
}

function addRate(benchmark: string, label: string, m: Measured | undefined, unit: string, base: Measured | undefined) {
  if (!m) return;
  const ratio = base ? times(m.rate / base.rate) : "";
  rows.push({ benchmark, case: label, result: `${count(m.rate)} ${unit}`, ratio, p50: ms(m.p50), p99: ms(m.p99) });
}

async function httpCases() {
  const benchmark = "HTTP, 10 connections";
  const cases = [
    { label: "(a) plain Express route", path: "/plain", headers: {} },
    { label: "(b) onFetch via the router", path: "/registry/actors/raw/http/", headers: routerHeaders("hello", "a") },
    { label: "(c) forwardToActor route", path: "/forward", headers: {} },
    { label: "(d) createServerClient in a route", path: "/server-client", headers: {} },
  ];
  const results: (Measured | undefined)[] = [];
  for (const c of cases) {
    results.push(
      await attempt(benchmark, c.label, () => withServer("memory", (host) => httpLoad(`http://${host}${c.path}`, c.headers, timing))),
    );
  }
  cases.forEach((c, i) => addRate(benchmark, c.label, results[i], "req/s", results[0]));
  return { plain: results[0], router: results[1] };
}

async function webSocketCases() {
  const protocols = ["rivetkit", "query." + encodeURIComponent(routerQuery("echo", "room")), "encoding.json"];
  const ratios = new Map<number, number>();
  for (const sockets of SOCKET_COUNTS) {
    const benchmark = `WebSocket echo, ${sockets} socket${sockets > 1 ? "s" : ""}`;
    const plain = await attempt(benchmark, "plain express-ws", () =>
      withServer("memory", (host) => wsLoad(`ws://${host}/echo`, [], sockets, timing)),
    );
    const actor = await attempt(benchmark, "onWebSocket via the router", () =>
      withServer("memory", (host) => wsLoad(`ws://${host}/registry/actors/raw/websocket/`, protocols, sockets, timing)),
    );
    addRate(benchmark, "plain express-ws", plain, "msg/s", plain);
    addRate(benchmark, "onWebSocket via the router", actor, "msg/s", plain);
    if (plain && actor) ratios.set(sockets, actor.rate / plain.rate);
  }
  return ratios;
}

async function persistenceCases() {
  const benchmark = "Persistence: count++ per request, router";
  const results: (Measured | undefined)[] = [];
  for (const store of ["memory", "file"] as const) {
    results.push(
      await attempt(benchmark, `${store}Store`, () =>
        withServer(store, (host) => httpLoad(`http://${host}/registry/actors/raw/http/`, routerHeaders("counter", "p"), timing)),
      ),
    );
  }
  addRate(benchmark, "memoryStore", results[0], "req/s", results[0]);
  addRate(benchmark, "fileStore (saved before the reply)", results[1], "req/s", results[0]);
}

async function activationCases() {
  const benchmark = "Activation, in process";
  let memoryCold: number | undefined;
  for (const store of ["memory", "file"] as const) {
    const label = `${store}Store`;
    const r = await attempt(benchmark, label, async () => {
      const child = new Child("activation.ts", [store, String(ACTIVATIONS), String(ACTIVATION_BUDGET_MS)]);
      try {
        return await child.message("activation", ACTIVATION_BUDGET_MS * 2 + 60_000);
      } finally {
        await child.stop();
      }
    });
    if (!r) continue;
    if (store === "memory") memoryCold = r.cold.p50;
    const capped = r.budgetHit ? ` (${ACTIVATION_BUDGET_MS / 1000} s cap)` : "";
    rows.push(
      { benchmark, case: `${label}, cold: new key`, result: `n = ${r.cold.n}${capped}`, ratio: "", p50: ms(r.cold.p50), p99: ms(r.cold.p99) },
      { benchmark, case: `${label}, warm: same keys again`, result: `n = ${r.warm.n}`, ratio: "", p50: ms(r.warm.p50), p99: ms(r.warm.p99) },
      {
        benchmark,
        case: `${label}, activation cost`,
        result: `cold − warm median = ${ms(r.cold.p50 - r.warm.p50)}`,
        ratio: `${times(r.cold.p50 / r.warm.p50)} warm`,
        p50: "",
        p99: "",
      },
    );
  }
  return memoryCold;
}

async function memoryCases() {
  const benchmark = "Memory per idle actor";
  let heapAtLargest: { actors: number; bytes: number } | undefined;
  for (const actors of MEMORY_ACTORS) {
    const r = await attempt(benchmark, `${count(actors)} actors`, async () => {
      const child = new Child("memory.ts", [String(actors)], ["--expose-gc"]);
      try {
        return await child.message("memory", 120_000);
      } finally {
        await child.stop();
      }
    });
    if (!r) continue;
    heapAtLargest = { actors, bytes: r.heapPerActor };
    rows.push({
      benchmark,
      case: `${count(actors)} actors (${count(r.live)} awake)`,
      result: `heap ${kib(r.heapPerActor)}, RSS ${kib(r.rssPerActor)}`,
      ratio: "",
      p50: "",
      p99: "",
    });
  }
  return heapAtLargest;
}

async function profileRouterCase(): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "express-actors-prof-"));
  try {
    await withServer(
      "memory",
      (host) => httpLoad(`http://${host}/registry/actors/raw/http/`, routerHeaders("hello", "a"), timing),
      ["--cpu-prof", "--cpu-prof-dir", dir],
    );
    const [file] = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"));
    if (!file) throw new Error("the server wrote no .cpuprofile");
    return summarizeProfile(path.join(dir, file));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function bar(name: string, value: number | undefined, limit: number, atLeast: boolean, shown: string) {
  if (value === undefined) return `| ${name} | not measured | – |`;
  const pass = atLeast ? value >= limit : value <= limit;
  return `| ${name} | ${shown} | ${pass ? "PASS" : "FAIL"} |`;
}

async function main() {
  const pinning = pinLoadGenerator();
  const started = Date.now();
  const { plain, router } = await httpCases();
  const wsRatios = await webSocketCases();
  await persistenceCases();
  const memoryCold = await activationCases();
  const heap = await memoryCases();

  const cpu = os.cpus();
  const table = [
    "| benchmark | case | result | ratio | p50 | p99 |",
    "|---|---|---:|---:|---:|---:|",
    ...rows.map((r) => `| ${r.benchmark} | ${r.case} | ${r.result} | ${r.ratio} | ${r.p50} | ${r.p99} |`),
  ];
  const routerRatio = plain && router ? router.rate / plain.rate : undefined;
  const wsRatio = wsRatios.get(BAR_SOCKETS);
  const otherWs = [...wsRatios].filter(([n]) => n !== BAR_SOCKETS).map(([n, r]) => `${times(r)} at ${n}`);
  const bars = [
    "| bar | measured | result |",
    "|---|---|---|",
    bar("onFetch via the router ≥ 0.85× plain Express (req/s)", routerRatio, 0.85, true, times(routerRatio ?? 0)),
    bar(
      `onWebSocket echo ≥ 0.9× plain express-ws echo (msg/s, ${BAR_SOCKETS} sockets)`,
      wsRatio,
      0.9,
      true,
      `${times(wsRatio ?? 0)}${otherWs.length ? ` (${otherWs.join(", ")} socket)` : ""}`,
    ),
    heap && heap.actors === 100_000
      ? bar("≤ 2 KiB heap per idle actor at 100,000 actors", heap.bytes, 2048, false, kib(heap.bytes))
      : "| ≤ 2 KiB heap per idle actor at 100,000 actors | not measured (--quick) | – |",
    bar("cold activation median ≤ 0.5 ms (memoryStore)", memoryCold, 0.5, false, ms(memoryCold ?? 0)),
  ];
  const report = [
    "# express-actors benchmark",
    "",
    `${cpu[0]?.model ?? "unknown CPU"}, ${cpu.length} cores · Node ${process.version} · ${os.type()} ${os.release()} · ` +
      `${new Date().toISOString()} · ${pinning}`,
    "",
    "Command: `npm run bench`" + (quick ? " (--quick)" : "") + `. Run time ${((Date.now() - started) / 1000).toFixed(0)} s.`,
    "",
    ...table,
    "",
    `- HTTP and persistence: autocannon (GET, 10 connections, ${timing.warmupS} s warmup + ${timing.durationS} s), ` +
      "a fresh server process per case; latency per response. Ratios vs (a), and vs memoryStore for persistence.",
    `- WebSocket: \`ws\` clients in the load generator, each sending a 15-byte text and waiting for its echo ` +
      `(${timing.warmupS} s warmup + ${timing.durationS} s); p50/p99 are round trips. Ratio vs plain express-ws.`,
    "- Activation: in process through `createServerClient()`, `getOrCreate([key]).fetch(\"/\")` one at a time, " +
      "body read; cold = a new key (record created, activated, first state saved), warm = the same key again.",
    "- Memory: `node --expose-gc`, actors with state `{ count: 0 }` activated through `createServerClient()` " +
      "and left idle (default memoryStore and sleepTimeout); (heapUsed and RSS after − before, each after gc) / actors.",
    "",
    "## Bars",
    "",
    ...bars,
    "",
  ].join("\n");

  console.log("\n" + report);
  if (!quick) writeFileSync(path.join(__dirname, "RESULTS.md"), report);
  if (profile) {
    const summary = await attempt("Profile", "onFetch via the router under --cpu-prof", profileRouterCase);
    if (summary) console.log("## CPU profile of the server, onFetch via the router\n\n" + summary);
  }
  if (failures.length) {
    console.error(`\n${failures.length} case(s) could not run:\n- ${failures.join("\n- ")}`);
    process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
