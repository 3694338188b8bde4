// `npm run bench`: HTTP, WebSocket, activation, memory and persistence in one run, printed as one
// markdown table (also written to bench/RESULTS.md) followed by the bar checks.
//   --quick    shorter cases, 10,000 actors only, RESULTS.md left alone (`npm run bench:quick`)
//   --profile  also run the router case under `node --cpu-prof` and summarize its hot functions
//   --cluster  only the cluster's HTTP forwarding-hop cases and bars, RESULTS.md left alone (with
//              --profile: both nodes under `node --cpu-prof`, each summarized)
// A FAIL is a measurement, not an error: the exit code is non-zero only when a case could not run.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Redis } from "ioredis";
import WebSocket from "ws";
import { Pool } from "pg";
import { Child, pinLoadGenerator } from "./children";
import { msSince, summarize } from "./common";
import { httpRound, wsRound, type Round } from "./load";
import { summarizeProfile } from "./profile-summary";
import { REDIS_URL, STORE_KINDS, type StoreKind } from "./stores";

const quick = process.argv.includes("--quick");
const profile = process.argv.includes("--profile");
const clusterOnly = process.argv.includes("--cluster");
const timing = quick ? { warmupS: 0.5, rounds: 3, roundS: 0.5 } : { warmupS: 1, rounds: 5, roundS: 1 };
/** The hop's edge runs code nothing else in the run warms: V8 must have optimized it before it is measured. */
const HOP_WARMUP_S = quick ? 1 : 3;
const ACTIVATIONS = quick ? 500 : 2000;
/** Cap on the cold series, for a slow disk under fileStore; the row shows how many were done. */
const ACTIVATION_BUDGET_MS = quick ? 5000 : 15_000;
const MEMORY_ACTORS = quick ? [10_000] : [10_000, 100_000];
const SOCKET_COUNTS = [1, 50];
const BAR_SOCKETS = 50;
const PERSISTENCE_CLIENTS = 50;
/** Idle sockets held across two cluster nodes (the rooms are opened first, on the owner). */
const HELD_SOCKETS = quick ? 2_000 : 10_000;
const HELD_ROOMS = 100;
/** The database the run makes its own database in (and drops it from). */
const PG_ADMIN_URL = process.env.BENCH_PG_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/test";

const routerQuery = (name: string, key: string) => JSON.stringify({ getOrCreateForKey: { name, key: [key] } });
const routerHeaders = (name: string, key: string) => ({ "x-rivetkit-actor-query": routerQuery(name, key) });
const wsProtocols = (name: string, key: string) => [
  "rivetkit",
  "query." + encodeURIComponent(routerQuery(name, key)),
  "encoding.json",
];

interface Row {
  benchmark: string;
  case: string;
  result: string;
  ratio: string;
  p50: string;
  p99: string;
  cpu?: string;
}

const rows: Row[] = [];
const failures: string[] = [];

/** The rows as a markdown table. */
const tableOf = (list: Row[]) => [
  "| benchmark | case | result | ratio | p50 | p99 | server CPU per op |",
  "|---|---|---:|---:|---:|---:|---:|",
  ...list.map((r) => `| ${r.benchmark} | ${r.case} | ${r.result} | ${r.ratio} | ${r.p50} | ${r.p99} | ${r.cpu ?? ""} |`),
];

const ms = (v: number) => (Number.isNaN(v) ? "–" : `${v < 1 ? v.toFixed(3) : v < 10 ? v.toFixed(2) : v.toFixed(1)} ms`);
const count = (v: number) => Math.round(v).toLocaleString("en-US");
const times = (v: number) => `${v.toFixed(2)}×`;
const kib = (bytes: number) => `${(bytes / 1024).toFixed(2)} KiB`;
const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

function failed(benchmark: string, label: string, message: string) {
  failures.push(`${benchmark} / ${label}: ${message}`);
  rows.push({ benchmark, case: label, result: `FAILED: ${message}`, ratio: "", p50: "", p99: "" });
}

/** Runs one case; a failure becomes a row saying so, and the rest of the run goes on. */
async function attempt<T>(benchmark: string, label: string, run: () => Promise<T>): Promise<T | undefined> {
  process.stderr.write(`${benchmark}: ${label}…\n`);
  try {
    return await run();
  } catch (err) {
    failed(benchmark, label, messageOf(err));
    return undefined;
  }
}

interface LoadCase {
  label: string;
  store: StoreKind;
  round: (host: string, seconds: number) => Promise<Round>;
}

interface Measured {
  /** The median of the rounds' rates. */
  rate: number;
  /** Over every measured request or round trip. */
  p50: number;
  p99: number;
  /** Server CPU time per request or round trip, µs, over every measured round. */
  cpu: number;
  /** Server CPU time / wall time of the measured rounds: near 1, the server is what limits the rate. */
  busy: number;
}

/** One server process per case, all started up front (only the one under load is busy), measured by `rounds`. */
function interleaved(benchmark: string, cases: LoadCase[]): Promise<(Measured | undefined)[]> {
  const servers = cases.map((c) => new Child("server.ts", [c.store]));
  return rounds(benchmark, servers, cases.map((c, i) => ({ label: c.label, round: c.round, server: i, cpuOf: [i] })));
}

interface Plan {
  label: string;
  round: (host: string, seconds: number) => Promise<Round>;
  /** The server the load goes to. */
  server: number;
  /** The servers whose CPU time the case costs. */
  cpuOf: number[];
}

/**
 * A warmup round of each case, then `timing.rounds` measured rounds in rotating order: noise from
 * elsewhere on the machine then falls on every case alike instead of on whichever ran during it.
 * `prepare` runs once every server is ready; the servers are stopped at the end.
 */
async function rounds(
  benchmark: string,
  servers: Child[],
  cases: Plan[],
  prepare?: (hosts: string[]) => Promise<void>,
  warmupS = timing.warmupS,
): Promise<(Measured | undefined)[]> {
  process.stderr.write(`${benchmark}: ${cases.map((c) => c.label).join(", ")}…\n`);
  const rates: number[][] = cases.map(() => []);
  const latencies: number[][] = cases.map(() => []);
  const cpuMicros = cases.map(() => 0);
  const wallMicros = cases.map(() => 0);
  const errors: (string | undefined)[] = cases.map(() => undefined);
  try {
    const ports = await Promise.all(servers.map(async (server) => (await server.message("ready", 30_000)).port));
    const hosts = ports.map((port) => `127.0.0.1:${port}`);
    await prepare?.(hosts);
    const cpuOf = async (i: number) => (await Promise.all(cases[i].cpuOf.map((s) => servers[s].cpuMicros()))).reduce((a, b) => a + b, 0);
    for (let round = -1; round < timing.rounds; round++) {
      for (let k = 0; k < cases.length; k++) {
        const i = (k + Math.max(round, 0)) % cases.length;
        if (errors[i]) continue;
        try {
          const cpuBefore = await cpuOf(i);
          const started = process.hrtime.bigint();
          const r = await cases[i].round(hosts[cases[i].server], round < 0 ? warmupS : timing.roundS);
          if (round < 0) continue;
          cpuMicros[i] += (await cpuOf(i)) - cpuBefore;
          wallMicros[i] += msSince(started) * 1000;
          rates[i].push(r.rate);
          for (const v of r.latencies) latencies[i].push(v);
        } catch (err) {
          errors[i] = messageOf(err);
        }
      }
    }
  } catch (err) {
    errors.fill(messageOf(err));
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
  return cases.map((c, i) => {
    const error = errors[i];
    if (error === undefined) {
      const cpu = cpuMicros[i] / latencies[i].length;
      return { rate: summarize(rates[i]).p50, cpu, busy: cpuMicros[i] / wallMicros[i], ...summarize(latencies[i]) };
    }
    failed(benchmark, c.label, error);
    return undefined;
  });
}

function addRate(benchmark: string, label: string, m: Measured | undefined, unit: string, base: Measured | undefined) {
  if (!m) return;
  const ratio = base ? times(m.rate / base.rate) : "";
  const cpu = `${count(m.cpu)} µs` + (base ? ` (${times(m.cpu / base.cpu)})` : "") + `, ${Math.round(m.busy * 100)}% busy`;
  rows.push({ benchmark, case: label, result: `${count(m.rate)} ${unit}`, ratio, p50: ms(m.p50), p99: ms(m.p99), cpu });
}

const http = (path: string, headers: Record<string, string> = {}) => (host: string, seconds: number) =>
  httpRound(`http://${host}${path}`, headers, seconds);

async function httpCases() {
  const benchmark = "HTTP, 10 connections";
  const cases: LoadCase[] = [
    { label: "(a) plain Express route", store: "memory", round: http("/plain") },
    { label: "(b) onFetch via the router", store: "memory", round: http("/registry/actors/raw/http/", routerHeaders("hello", "a")) },
    { label: "(c) forwardToActor route", store: "memory", round: http("/forward") },
    { label: "(d) createServerClient in a route", store: "memory", round: http("/server-client") },
    { label: "(e) lower bound: (a) + new Request + Response.json, cheapest write", store: "memory", round: http("/w3c-floor") },
    { label: "(f) (e) + the contract's Request: client headers, request.signal", store: "memory", round: http("/contract-request") },
  ];
  const results = await interleaved(benchmark, cases);
  cases.forEach((c, i) => addRate(benchmark, c.label, results[i], "req/s", results[0]));
  return { plain: results[0], router: results[1], floor: results[4], contract: results[5] };
}

/** The router with and without logger, metrics and tracing, in one server process. */
async function observabilityCases() {
  const benchmark = "Observability, HTTP, 10 connections";
  const headers = routerHeaders("hello", "a");
  const labels = ["(a) onFetch via the router, no logger, metrics or tracing", "(b) the same with pino, prom-client and OpenTelemetry spans"];
  const [off, on] = await rounds(benchmark, [new Child("observed-server.ts")], [
    { label: labels[0], round: http("/off/actors/raw/http/", headers), server: 0, cpuOf: [0] },
    { label: labels[1], round: http("/on/actors/raw/http/", headers), server: 0, cpuOf: [0] },
  ]);
  addRate(benchmark, labels[0], off, "req/s", off);
  addRate(benchmark, labels[1], on, "req/s", off);
}

async function webSocketCases() {
  const ratios = new Map<number, number>();
  const floors = new Map<number, number>();
  for (const sockets of SOCKET_COUNTS) {
    const benchmark = `WebSocket echo, ${sockets} socket${sockets > 1 ? "s" : ""}`;
    const cases: LoadCase[] = [
      { label: "plain express-ws", store: "memory", round: (host, s) => wsRound(`ws://${host}/echo`, [], sockets, s) },
      {
        label: "onWebSocket via the router",
        store: "memory",
        round: (host, s) => wsRound(`ws://${host}/registry/actors/raw/websocket/`, wsProtocols("echo", "room"), sockets, s),
      },
      {
        label: "lower bound: express-ws + MessageEvent + string send",
        store: "memory",
        round: (host, s) => wsRound(`ws://${host}/w3c-floor`, [], sockets, s),
      },
    ];
    const [plain, actor, floor] = await interleaved(benchmark, cases);
    cases.forEach((c, i) => addRate(benchmark, c.label, [plain, actor, floor][i], "msg/s", plain));
    if (plain && actor) ratios.set(sockets, actor.rate / plain.rate);
    if (plain && floor) floors.set(sockets, floor.rate / plain.rate);
  }
  return { ratios, floors };
}

/** Each durable store against memoryStore: 50 clients, each on an actor of its own, state saved before each reply. */
async function persistenceCases() {
  const benchmark = `Persistence: count++ per request, ${PERSISTENCE_CLIENTS} clients on ${PERSISTENCE_CLIENTS} actors`;
  const round = (host: string, seconds: number) =>
    httpRound(`http://${host}/registry/actors/raw/http/`, (i) => routerHeaders("counter", `p${i}`), seconds, PERSISTENCE_CLIENTS);
  const cases: LoadCase[] = STORE_KINDS.map((store) => ({ label: `${store}Store`, store, round }));
  const results = await interleaved(benchmark, cases);
  cases.forEach((c, i) => addRate(benchmark, c.label + (c.store === "memory" ? "" : " (saved before the reply)"), results[i], "req/s", results[0]));
  const memory = results[0];
  return new Map(STORE_KINDS.map((store, i) => [store, memory && results[i] ? results[i]!.rate / memory.rate : undefined]));
}

/**
 * Two cluster nodes (redisCluster, a shared redisStore): the same actor's requests sent to its owner,
 * and sent to the other node, which forwards each one to the owner; at 10 connections (the CPU a
 * request costs, here the pair's in both cases) and at 1 (the latency the hop adds, unqueued).
 */
async function hopCases(profileDir?: string) {
  const benchmark = "Cluster, HTTP";
  const query = routerHeaders("hello", "hop");
  const servedBy = async (host: string) => {
    const res = await fetch(`http://${host}/registry/actors/raw/http/`, { headers: query });
    if (res.status !== 200) throw new Error(`${host} answered ${res.status}: ${await res.text()}`);
    return ((await res.json()) as { node: string }).node;
  };
  const node = (name: string) =>
    new Child("cluster-node.ts", [name], profileDir ? ["--cpu-prof", "--cpu-prof-dir", path.join(profileDir, name)] : []);
  const servers = [node("owner"), node("edge")];
  const round = (connections: number) => (host: string, seconds: number) =>
    httpRound(`http://${host}/registry/actors/raw/http/`, query, seconds, connections);
  let ownerPort = "";
  const bare = (path: string, connections: number) => (host: string, seconds: number) =>
    httpRound(`http://${host}${path}`, { "x-bench-target": ownerPort }, seconds, connections);
  const plans: Plan[] = [
    { label: "(a) onFetch via the router, served by the owner, 10 connections", round: round(10), server: 0, cpuOf: [0, 1] },
    { label: "(b) the same through a forwarding hop: edge → owner, 10 connections", round: round(10), server: 1, cpuOf: [0, 1] },
    { label: "(c) as (a), 1 connection", round: round(1), server: 0, cpuOf: [0, 1] },
    { label: "(d) as (b), 1 connection", round: round(1), server: 1, cpuOf: [0, 1] },
    { label: "(e) lower bound: a plain Express route on the owner's process, 10 connections", round: bare("/plain", 10), server: 0, cpuOf: [0, 1] },
    { label: "(f) (e) through a bare http-proxy-middleware hop from the edge's process, 10 connections", round: bare("/proxied", 10), server: 1, cpuOf: [0, 1] },
    { label: "(g) as (e), 1 connection", round: bare("/plain", 1), server: 0, cpuOf: [0, 1] },
    { label: "(h) as (f), 1 connection", round: bare("/proxied", 1), server: 1, cpuOf: [0, 1] },
  ];
  const results = await rounds(
    benchmark,
    servers,
    plans,
    // The first request makes "owner" the owner; the edge's must then be served there.
    async ([owner, edge]) => {
      ownerPort = owner.split(":")[1];
      for (const host of [owner, edge]) {
        const node = await servedBy(host);
        if (node !== "owner") throw new Error(`a request to ${host} was served by "${node}", not by the owner`);
      }
    },
    HOP_WARMUP_S,
  );
  // Each hop against the same requests served directly: (b) vs (a), (d) vs (c), and so on.
  plans.forEach((plan, i) => addRate(benchmark, plan.label, results[i], "req/s", results[i - (i % 2)]));
  const [direct, hop, directAlone, hopAlone, plain, proxied, plainAlone, proxiedAlone] = results;
  return { direct, hop, directAlone, hopAlone, plain, proxied, plainAlone, proxiedAlone };
}

/**
 * Two cluster nodes with an echo actor: the sockets of one actor sent to its owner, and sent to the
 * other node, which relays each to the owner. CPU is the pair's in both cases.
 */
async function socketHopCases() {
  const benchmark = `Cluster, WebSocket echo, ${BAR_SOCKETS} sockets`;
  const servers = [0, 1].map((i) => new Child("cluster-ws-node.ts", [i === 0 ? "owner" : "edge"]));
  const protocols = wsProtocols("echo", "hop");
  const round = (host: string, seconds: number) => wsRound(`ws://${host}/registry/actors/raw/websocket/`, protocols, BAR_SOCKETS, seconds);
  const labels = ["(a) onWebSocket, sockets to the owner", "(b) the same relayed by the other node: edge → owner"];
  const [direct, hop] = await rounds(
    benchmark,
    servers,
    [
      { label: labels[0], round, server: 0, cpuOf: [0, 1] },
      { label: labels[1], round, server: 1, cpuOf: [0, 1] },
    ],
    // A first round trip on the owner makes it the owner.
    async ([owner]) => void (await wsRound(`ws://${owner}/registry/actors/raw/websocket/`, protocols, 1, 0.05)),
  );
  addRate(benchmark, labels[0], direct, "msg/s", direct);
  addRate(benchmark, labels[1], hop, "msg/s", direct);
}

/**
 * Idle sockets held by two cluster nodes: half of the clients on the owner of every actor, half on
 * the other node, which relays each. Memory per socket on each, after a full GC.
 */
async function heldSocketCases() {
  const benchmark = "Cluster, idle WebSockets";
  const label = `${count(HELD_SOCKETS)} sockets on ${HELD_ROOMS} actors, half relayed by an edge`;
  const r = await attempt(benchmark, label, async () => {
    const owner = new Child("cluster-ws-node.ts", ["owner"], ["--expose-gc"]);
    const edge = new Child("cluster-ws-node.ts", ["edge"], ["--expose-gc"]);
    const clients: WebSocket[] = [];
    try {
      const [ownerPort, edgePort] = await Promise.all([owner, edge].map(async (c) => (await c.message("ready", 30_000)).port));
      const url = (port: number) => `ws://127.0.0.1:${port}/registry/actors/raw/websocket/`;
      const open = async (port: number, room: number) => {
        const ws = new WebSocket(url(port), wsProtocols("echo", `room-${room}`));
        clients.push(ws);
        await new Promise<void>((resolve, reject) => {
          ws.once("open", () => resolve());
          ws.once("error", reject);
          ws.once("close", (code) => reject(new Error(`a socket closed with ${code} while opening`)));
        });
      };
      // The owner takes every actor first; its memory is measured with them awake and idle.
      for (let room = 0; room < HELD_ROOMS; room++) await open(ownerPort, room);
      const before = await Promise.all([owner.heap(), edge.heap()]);
      const half = (HELD_SOCKETS - HELD_ROOMS) / 2;
      for (const port of [ownerPort, edgePort]) {
        for (let opened = 0; opened < half; opened += 250) {
          await Promise.all(Array.from({ length: Math.min(250, half - opened) }, (_, i) => open(port, (opened + i) % HELD_ROOMS)));
        }
      }
      // Still alive through the edge: one echo on the last relayed socket.
      const last = clients[clients.length - 1];
      await new Promise<void>((resolve) => {
        last.once("message", () => resolve());
        last.send("still there");
      });
      const after = await Promise.all([owner.heap(), edge.heap()]);
      const ownerSockets = HELD_SOCKETS - HELD_ROOMS;
      return {
        owner: { heap: (after[0].heapUsed - before[0].heapUsed) / ownerSockets, rss: (after[0].rss - before[0].rss) / ownerSockets },
        edge: { heap: (after[1].heapUsed - before[1].heapUsed) / half, rss: (after[1].rss - before[1].rss) / half },
      };
    } finally {
      for (const ws of clients) ws.terminate();
      await Promise.all([owner.stop(), edge.stop()]);
    }
  });
  if (!r) return;
  const row = (who: string, m: { heap: number; rss: number }) =>
    rows.push({ benchmark, case: `${label}: ${who}`, result: `heap ${kib(m.heap)}, RSS ${kib(m.rss)}`, ratio: "", p50: "", p99: "" });
  row("the owner, per socket it serves", r.owner);
  row("the edge, per socket it relays", r.edge);
}

async function activationCases() {
  const benchmark = "Activation, in process";
  const coldMedians = new Map<StoreKind, number>();
  for (const store of STORE_KINDS) {
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
    coldMedians.set(store, r.cold.p50);
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
  return coldMedians;
}

/**
 * A PostgreSQL database and a Redis key prefix of this run's own, handed to the children through
 * the environment; the returned function drops the database and deletes the keys.
 */
async function prepareServices(): Promise<() => Promise<void>> {
  const run = `${Date.now().toString(36)}_${randomBytes(3).toString("hex")}`;
  const database = `ea_bench_${run}`;
  const admin = new Pool({ connectionString: PG_ADMIN_URL, max: 1, connectionTimeoutMillis: 5000 });
  let created = false;
  try {
    await admin.query(`CREATE DATABASE ${database}`);
    created = true;
    const url = new URL(PG_ADMIN_URL);
    url.pathname = "/" + database;
    process.env.BENCH_PG_URL = url.toString();
  } catch (err) {
    process.stderr.write(`PostgreSQL at ${PG_ADMIN_URL}: ${messageOf(err)} (its cases will fail)\n`);
  }
  process.env.BENCH_REDIS_PREFIX = `ea-bench:${run}:`;
  return async () => {
    if (created) await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => {});
    await admin.end();
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true });
    redis.on("error", () => {});
    try {
      await redis.connect();
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", `${process.env.BENCH_REDIS_PREFIX}*`, "COUNT", 1000);
        if (keys.length) await redis.del(...keys);
        cursor = next;
      } while (cursor !== "0");
    } catch {
      // No Redis: its cases failed and left nothing.
    } finally {
      redis.disconnect();
    }
  };
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
      // All must still be awake: activation has to finish within the 30 s sleepTimeout.
      case: `${count(actors)} actors (${count(r.live)} awake, activated in ${(r.activationMs / 1000).toFixed(1)} s)`,
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
    const server = new Child("server.ts", ["memory"], ["--cpu-prof", "--cpu-prof-dir", dir]);
    try {
      const { port } = await server.message("ready", 30_000);
      await http("/registry/actors/raw/http/", routerHeaders("hello", "a"))(
        `127.0.0.1:${port}`,
        timing.warmupS + timing.rounds * timing.roundS,
      );
    } finally {
      await server.stop();
    }
    // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the main thread (tsx's loader has its own).
    const [file] = readdirSync(dir).filter((f) => /\.0\.\d+\.cpuprofile$/.test(f));
    if (!file) throw new Error("the server wrote no .cpuprofile");
    return summarizeProfile(path.join(dir, file));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function hopBars(m: Awaited<ReturnType<typeof hopCases>>): string[] {
  const { direct, hop, directAlone, hopAlone, plain, proxied, plainAlone, proxiedAlone } = m;
  const added = directAlone && hopAlone ? hopAlone.p50 - directAlone.p50 : undefined;
  const cpu = direct && hop ? hop.cpu / direct.cpu : undefined;
  const queued = direct && hop ? `; at 10 connections ${ms(direct.p50)} → ${ms(hop.p50)}` : "";
  // What the mandated proxy costs by itself, between two routes that do nothing else.
  const bareAdded = plainAlone && proxiedAlone ? `; a bare http-proxy-middleware hop adds ${ms(proxiedAlone.p50 - plainAlone.p50)}` : "";
  const extra = direct && hop ? `(b) − (a) = ${count(hop.cpu - direct.cpu)} µs` : "";
  const bareExtra = plain && proxied ? `; a bare http-proxy-middleware hop: (f) − (e) = ${count(proxied.cpu - plain.cpu)} µs` : "";
  return [
    bar(
      "a forwarding hop adds ≤ 0.5 ms at p50 (1 connection)",
      added,
      0.5,
      false,
      `${ms(added ?? NaN)} (${ms(directAlone?.p50 ?? NaN)} → ${ms(hopAlone?.p50 ?? NaN)}${queued}${bareAdded})`,
    ),
    bar(
      "a forwarded request costs the two nodes ≤ 2× the CPU of one served by its owner",
      cpu,
      2,
      false,
      `${times(cpu ?? 0)} (${extra}${bareExtra})`,
    ),
  ];
}

function bar(name: string, value: number | undefined, limit: number, atLeast: boolean, shown: string) {
  if (value === undefined) return `| ${name} | not measured | – |`;
  const pass = atLeast ? value >= limit : value <= limit;
  return `| ${name} | ${shown} | ${pass ? "PASS" : "FAIL"} |`;
}

/** `--cluster`: the hop's cases and bars alone, for working on the hop. */
async function clusterMain() {
  pinLoadGenerator();
  const cleanupServices = await prepareServices();
  const dir = profile ? mkdtempSync(path.join(os.tmpdir(), "express-actors-prof-")) : undefined;
  try {
    const hop = await hopCases(dir);
    console.log(["", ...tableOf(rows), "", "| bar | measured | result |", "|---|---|---|", ...hopBars(hop)].join("\n"));
    for (const name of dir ? ["owner", "edge"] : []) {
      const [file] = readdirSync(path.join(dir!, name)).filter((f) => /\.0\.\d+\.cpuprofile$/.test(f));
      if (file) console.log(`\n## CPU profile of the ${name} node\n\n` + summarizeProfile(path.join(dir!, name, file), 25));
    }
  } finally {
    await cleanupServices();
  }
  if (failures.length) {
    console.error(`\n${failures.length} case(s) could not run:\n- ${failures.join("\n- ")}`);
    process.exitCode = 1;
  }
}

async function main() {
  const pinning = pinLoadGenerator();
  const started = Date.now();
  // Other work on the machine skews every number; the load average says how much there was.
  const loadBefore = os.loadavg()[0];
  const { plain, router, floor, contract } = await httpCases();
  const { ratios: wsRatios, floors: wsFloors } = await webSocketCases();
  await observabilityCases();
  const cleanupServices = await prepareServices();
  let storeRatios: Map<StoreKind, number | undefined>;
  let coldMedians: Map<StoreKind, number>;
  let hop: Awaited<ReturnType<typeof hopCases>>;
  try {
    storeRatios = await persistenceCases();
    hop = await hopCases();
    await socketHopCases();
    await heldSocketCases();
    coldMedians = await activationCases();
  } finally {
    await cleanupServices();
  }
  const memoryCold = coldMedians.get("memory");
  const heap = await memoryCases();

  const cpu = os.cpus();
  const table = tableOf(rows);
  const routerRatio = plain && router ? router.rate / plain.rate : undefined;
  const wsRatio = wsRatios.get(BAR_SOCKETS);
  const otherWs = [...wsRatios].filter(([n]) => n !== BAR_SOCKETS).map(([n, r]) => `${times(r)} at ${n}`);
  const bars = [
    "| bar | measured | result |",
    "|---|---|---|",
    bar(
      "onFetch via the router ≥ 0.85× plain Express (req/s)",
      routerRatio,
      0.85,
      true,
      times(routerRatio ?? 0) +
        (plain && floor && contract
          ? ` (lower bounds: (e) ${times(floor.rate / plain.rate)}, (f) ${times(contract.rate / plain.rate)})`
          : ""),
    ),
    bar(
      `onWebSocket echo ≥ 0.9× plain express-ws echo (msg/s, ${BAR_SOCKETS} sockets)`,
      wsRatio,
      0.9,
      true,
      `${times(wsRatio ?? 0)}${otherWs.length ? ` (${otherWs.join(", ")} socket)` : ""}` +
        (wsFloors.has(BAR_SOCKETS) ? ` (lower bound: ${times(wsFloors.get(BAR_SOCKETS)!)})` : ""),
    ),
    heap && heap.actors === 100_000
      ? bar("≤ 2 KiB heap per idle actor at 100,000 actors", heap.bytes, 2048, false, kib(heap.bytes))
      : "| ≤ 2 KiB heap per idle actor at 100,000 actors | not measured (--quick) | – |",
    bar("cold activation median ≤ 0.5 ms (memoryStore)", memoryCold, 0.5, false, ms(memoryCold ?? 0)),
    ...([["sqlite", 0.5], ["postgres", 0.5], ["redis", 0.7]] as const).map(([store, limit]) => {
      const ratio = storeRatios.get(store);
      return bar(`${store}Store ≥ ${limit}× memoryStore (req/s, ${PERSISTENCE_CLIENTS} clients)`, ratio, limit, true, times(ratio ?? 0));
    }),
    ...hopBars(hop),
  ];
  const report = [
    "# express-actors benchmark",
    "",
    `${cpu[0]?.model ?? "unknown CPU"}, ${cpu.length} cores · Node ${process.version} · ${os.type()} ${os.release()} · ` +
      `${new Date().toISOString()} · ${pinning}`,
    "",
    "Command: `npm run bench`" + (quick ? " (--quick)" : "") + `. Run time ${((Date.now() - started) / 1000).toFixed(0)} s; ` +
      `1-minute load average ${loadBefore.toFixed(2)} before, ${os.loadavg()[0].toFixed(2)} after.`,
    "",
    ...table,
    "",
    `- HTTP, WebSocket and persistence: one server process per case; after a ${timing.warmupS} s warmup round of each, ` +
      `${timing.rounds} rounds of ${timing.roundS} s per case, interleaved; rate = the median round, p50/p99 over ` +
      "all measured rounds. Ratios vs (a), vs plain express-ws, and vs memoryStore. Server CPU per op = the " +
      "server process's CPU time (all threads) during the measured rounds / requests or round trips: a cost that " +
      "other load on the machine skews far less than req/s. Busy = that CPU time / the rounds' wall time: a " +
      "rate ratio compares server costs only when the server is near 100% busy in both cases; well below, the " +
      "load generator (or the machine) set the pace.",
    "- Lower bounds: HTTP (e) is a plain route plus only the two W3C objects every onFetch path creates " +
      "(a `new Request` with no headers and no signal, the handler's `Response.json`), written with writeHead + " +
      "end; the WebSocket one is the plain echo plus a string decode, a `MessageEvent` dispatched through an " +
      "`EventTarget`, and a string send. No router that hands real W3C objects to actors can beat them on this " +
      "Node: they show how much of each bar is left for the library's own work. (f) adds the Request the " +
      "contract asks for (the client's headers, a `request.signal` that aborts when the client leaves), built " +
      "by the library's own code; (f) → (b) is routing, the actor, onAuth and writing the Response.",
    "- HTTP: autocannon, GET, 10 connections, latency per response (sub-ms). WebSocket: `ws` clients in the " +
      "load generator, each sending a 15-byte text and waiting for its echo before the next; latency = round trip.",
    "- Cluster: two node processes (both pinned to the server's core) with `redisCluster()` and one `redisStore`, " +
      "on the machine's Redis under the run's key prefix; (a) and (c) send the router's requests for one actor to " +
      "the node that owns it, (b) and (d) to the other node, which remembers the owner (no store or Redis call " +
      "while the lease it saw lasts) and forwards each request through http-proxy-middleware (keep-alive). CPU per " +
      "op is the two nodes' together in every case (Redis's own CPU is not counted); busy is that over one core. " +
      `A ${HOP_WARMUP_S} s warmup round of each: the edge's forwarding code is optimized by V8 only once it is hot. ` +
      "At 10 connections both nodes share one core, so a p50 there is mostly waiting for it (about 10 × the CPU " +
      "per request); the latency the hop adds is read at 1 connection. (e) to (h), the lower bound of any hop " +
      "through http-proxy-middleware (which SPEC §9 prescribes) on this machine: a plain Express route answering " +
      "the same JSON on the owner's process, and that route reached from the edge's process through a bare " +
      "`createProxyMiddleware` (keep-alive agent, no plugins): no actor, no onAuth, no signature. The WebSocket " +
      "rows do the same with sockets: (b)'s sockets open on the other node, which relays every message to the " +
      "owner and back. Idle sockets: the owner takes every actor first; then half of the sockets open on it and " +
      "half on the edge; heap and RSS deltas after a full GC, per socket the owner serves (direct or relayed) " +
      "and per socket the edge relays (its client's socket plus its own to the owner).",
    "- Observability: one server process with the same actor mounted twice, (a) with no `logger`, `metrics` " +
      "or `tracing` (the path every other row measures: one property test per hook) and (b) with a pino logger " +
      "(to /dev/null), a prom-client Registry and an OpenTelemetry tracer exporting in batches (spans dropped).",
    `- Persistence: ${PERSISTENCE_CLIENTS} autocannon connections, each on a counter actor of its own, every ` +
      "request changes the state, so every reply waits for its save. PostgreSQL and Redis are the machine's " +
      "(127.0.0.1), in a database and a key prefix of the run's own; SQLite and files in a temp directory.",
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

(clusterOnly ? clusterMain() : main()).catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
