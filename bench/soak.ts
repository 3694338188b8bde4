// Load and soak (docs/performance.md#load-and-soak), bounded in count and time, on 127.0.0.1:
//   1. sockets:   N WebSockets held by one server process; heap and RSS per socket after GC.
//   2. slowloris: headers and bodies trickled a byte at a time while normal writes keep answering.
//   3. mixed:     HTTP writes, SSE streams and WebSocket sessions over thousands of actors that sleep
//                 and wake on a fileStore; heap after GC at the end vs after a warmup; then the server
//                 is killed (SIGKILL) under traffic and a new registry over the same files must hold
//                 every acknowledged write.
// The server is a child process (--expose-gc) and the clients are others, so that the measured
// process holds only its own sockets.
//
//   tsx bench/soak.ts [--minutes N] [--sockets N] [--short] [--sources] [--json FILE]
//
// --minutes: length of the mixed phase (default 10). --short: the CI version (about 50 s).
// --sources: run the server on lib/ instead of the built dist/. Exits 1 when a check fails.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { LoadApi, MixedResult, SlowlorisResult } from "./soak-load";
import { Worker } from "./soak-ipc";
import { fmt, kib, mib, printReport } from "./soak-report";
import type { ServerApi, ServerConfig, ServerStats } from "./soak-server";

export interface Profile {
  sockets: number;
  /** Sockets opened at once by each client process. */
  socketBatch: number;
  /** How long the sockets stay open before the second ping. */
  holdSeconds: number;
  slowHeaders: number;
  slowBodies: number;
  byteMs: number;
  headersTimeout: number;
  requestTimeout: number;
  connectionsCheckingInterval: number;
  keys: number;
  sleepTimeout: number;
  warmupSeconds: number;
  mixedSeconds: number;
  /** Traffic that goes on while the server is killed. */
  tailSeconds: number;
  workers: { http: number; sse: number; ws: number };
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

/** Heap growth allowed from the warmup to the end, both after GC with everything asleep. */
const HEAP_TOLERANCE = { fraction: 0.1, bytes: 2 * 1024 * 1024 };
/** Sockets per client process: each process holds fewer descriptors than the limit allows. */
const SOCKETS_PER_CLIENT = 2500;
const ROOT = path.resolve(__dirname, "..");

function parseArgs(argv: string[]) {
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("--")) throw new Error(`unexpected argument ${arg}`);
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith("--")) {
      flags.set(arg.slice(2), next);
      i++;
    } else flags.set(arg.slice(2), true);
  }
  const number = (name: string) => {
    const value = flags.get(name);
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!(n > 0)) throw new Error(`--${name} needs a positive number`);
    return n;
  };
  const short = flags.has("short");
  const profile: Profile = short
    ? {
        sockets: 2000,
        socketBatch: 250,
        holdSeconds: 5,
        slowHeaders: 100,
        slowBodies: 100,
        byteMs: 200,
        headersTimeout: 2000,
        requestTimeout: 4000,
        connectionsCheckingInterval: 500,
        keys: 1000,
        sleepTimeout: 250,
        warmupSeconds: 5,
        mixedSeconds: 20,
        tailSeconds: 2,
        workers: { http: 8, sse: 2, ws: 2 },
      }
    : {
        sockets: 10_000,
        socketBatch: 500,
        holdSeconds: 60,
        slowHeaders: 500,
        slowBodies: 500,
        byteMs: 1000,
        headersTimeout: 10_000,
        requestTimeout: 30_000,
        connectionsCheckingInterval: 1000,
        keys: 5000,
        sleepTimeout: 500,
        warmupSeconds: 60,
        mixedSeconds: (number("minutes") ?? 10) * 60,
        tailSeconds: 3,
        workers: { http: 16, sse: 4, ws: 4 },
      };
  profile.sockets = number("sockets") ?? profile.sockets;
  return { profile, short, sources: flags.has("sources"), json: flags.get("json") as string | undefined };
}

const options = parseArgs(process.argv.slice(2));
const { profile } = options;
const log = (line: string) => console.log(`soak: ${line}`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The hard limit on open files, which the workers raise their soft limit to. */
function hardFileLimit(): number {
  if (process.platform === "win32") return Infinity;
  const out = spawnSync("/bin/sh", ["-c", "ulimit -Hn"], { encoding: "utf8" }).stdout.trim();
  return out === "unlimited" ? Infinity : Number(out);
}

/** The processes of one run and its list of checks. */
interface Run {
  server: Worker<ServerApi>;
  clients: Array<Worker<LoadApi>>;
  checks: Check[];
}

function check(run: Run, name: string, ok: boolean, detail: string) {
  run.checks.push({ name, ok, detail });
  if (!ok) log(`FAILED ${name}: ${detail}`);
}

async function socketsPhase(run: Run) {
  const { server, clients } = run;
  // A first small batch loads and optimizes the code paths, so that the baseline excludes one-time costs.
  await clients[0].call("openSockets", { count: 100, batch: 100, rooms: 10, offset: 0 });
  await clients[0].call("closeAll", { batch: 100 });
  await server.call("quiet", 10_000);
  const baseline = await server.call("stats", undefined);
  const before = await server.call("memory", undefined);

  const n = profile.sockets;
  log(`opening ${fmt(n)} WebSockets in batches of ${profile.socketBatch} per client process`);
  const openStart = Date.now();
  const share = Math.ceil(n / clients.length);
  const opened = await Promise.all(
    clients.map((c, i) =>
      c.call("openSockets", { count: Math.min(share, n - i * share), batch: profile.socketBatch, rooms: Math.ceil(n / 100), offset: i * share }, 600_000),
    ),
  );
  const openMs = Date.now() - openStart;
  const firstPing = await Promise.all(clients.map((c) => c.call("pingAll", undefined)));
  const held = await server.call("memory", undefined);
  const heldStats = await server.call("stats", undefined);
  const openedCount = opened.reduce((sum, o) => sum + o.opened, 0);
  log(`${fmt(openedCount)} open in ${(openMs / 1000).toFixed(1)} s; holding them ${profile.holdSeconds} s`);
  await sleep(profile.holdSeconds * 1000);
  const secondPing = await Promise.all(clients.map((c) => c.call("pingAll", undefined)));
  const closed = await Promise.all(clients.map((c) => c.call("closeAll", { batch: profile.socketBatch }, 600_000)));
  const after = (await server.call("quiet", 30_000)).stats;
  const released = await server.call("memory", undefined);

  const errors = [...opened, ...firstPing, ...secondPing].flatMap((o) => o.errors).slice(0, 10);
  const sockets = {
    target: n,
    opened: openedCount,
    openMs,
    serverOpen: heldStats.holdOpen,
    pingedAfterOpen: firstPing.reduce((sum, p) => sum + p.ok, 0),
    pingedAfterHold: secondPing.reduce((sum, p) => sum + p.ok, 0),
    closedCleanClient: closed.reduce((sum, c) => sum + c.clean, 0),
    closedCleanServer: after.holdClosedClean - baseline.holdClosedClean,
    closedOtherServer: after.holdClosedOther - baseline.holdClosedOther,
    stillOpenServer: after.holdOpen,
    before,
    held,
    released,
    heapPerSocket: (held.heapUsed - before.heapUsed) / openedCount,
    rssPerSocket: (held.rss - before.rss) / openedCount,
    errors,
  };
  check(run, "sockets opened", sockets.opened === n && sockets.serverOpen === n, `${fmt(sockets.opened)}/${fmt(n)} opened, ${fmt(sockets.serverOpen)} open on the server ${errors.join("; ")}`);
  check(run, "sockets answered while held", sockets.pingedAfterOpen === n && sockets.pingedAfterHold === n, `ping after open ${fmt(sockets.pingedAfterOpen)}, after ${profile.holdSeconds} s ${fmt(sockets.pingedAfterHold)}`);
  check(
    run,
    "sockets closed cleanly",
    sockets.closedCleanClient === n && sockets.closedCleanServer === n && sockets.stillOpenServer === 0,
    `client saw ${fmt(sockets.closedCleanClient)} clean closes, server ${fmt(sockets.closedCleanServer)} (${sockets.closedOtherServer} other, ${sockets.stillOpenServer} still open)`,
  );
  log(`per socket: heap ${kib(sockets.heapPerSocket)}, RSS ${kib(sockets.rssPerSocket)}`);
  return sockets;
}

async function slowlorisPhase(run: Run) {
  log(`slowloris: ${profile.slowHeaders} connections trickling headers, ${profile.slowBodies} trickling bodies, 1 byte / ${profile.byteMs} ms`);
  const deadlineMs = profile.requestTimeout + 4 * profile.connectionsCheckingInterval + 10_000;
  const keys = Array.from({ length: 20 }, (_, i) => `slow-${i}`);
  const slow: SlowlorisResult = await run.clients[0].call(
    "slowloris",
    { headers: profile.slowHeaders, bodies: profile.slowBodies, keys, byteMs: profile.byteMs, probes: 4, deadlineMs },
    deadlineMs + 60_000,
  );
  const stats = await run.server.call("stats", undefined);
  const { probes, headers, bodies } = slow;
  check(run, "slowloris did not block", probes.failed === 0 && probes.okWhileAllOpen > 0, `${fmt(probes.ok)} normal writes answered (${fmt(probes.okWhileAllOpen)} while every slow connection was open), ${probes.failed} failed ${probes.errors.join("; ")}`);
  check(
    run,
    "slow connections cut by the server",
    headers.openAtDeadline === 0 && bodies.openAtDeadline === 0,
    `headers: ${headers.closedByServer}/${headers.connections} cut (${headers.answered408} with 408); bodies: ${bodies.closedByServer}/${bodies.connections} cut (${bodies.answered408} with 408)`,
  );
  return { slow, stats };
}

const failures = (r: MixedResult) => r.http.failed + r.sse.failed + r.ws.failed;

async function mixedPhase(run: Run, startStats: ServerStats) {
  const { server, clients } = run;
  const { workers } = profile;
  log(`mixed: warmup of ${profile.warmupSeconds} s over ${fmt(profile.keys)} actors (sleepTimeout ${profile.sleepTimeout} ms), ${workers.http} HTTP writers, ${workers.sse} SSE readers, ${workers.ws} WebSocket sessions`);
  const traffic = { keys: profile.keys, ...workers };
  const warmup = await clients[0].call("mixed", { ...traffic, seconds: profile.warmupSeconds, sweep: true }, profile.warmupSeconds * 1000 + 600_000);
  const warmQuiet = await server.call("quiet", 60_000);
  const heapWarm = await server.call("memory", undefined);
  log(`after warmup: heap ${mib(heapWarm.heapUsed)}, RSS ${mib(heapWarm.rss)}; mixed traffic for ${profile.mixedSeconds} s`);
  const main = await clients[0].call("mixed", { ...traffic, seconds: profile.mixedSeconds, sweep: false }, profile.mixedSeconds * 1000 + 300_000);
  const endQuiet = await server.call("quiet", 60_000);
  const heapEnd = await server.call("memory", undefined);
  const stats = await server.call("stats", undefined);

  const growth = heapEnd.heapUsed - heapWarm.heapUsed;
  const allowed = Math.max(HEAP_TOLERANCE.bytes, HEAP_TOLERANCE.fraction * heapWarm.heapUsed);
  check(run, "mixed traffic answered", failures(warmup) + failures(main) === 0, [...warmup.errors, ...main.errors].slice(0, 10).join("; ") || "no failures");
  check(run, "every actor slept at the end", warmQuiet.quiet && endQuiet.quiet, `awake ${endQuiet.stats.counterAwake}, streams ${endQuiet.stats.sseOpen}, sessions ${endQuiet.stats.sessionsOpen}`);
  check(run, "heap flat after GC", growth <= allowed, `${mib(heapWarm.heapUsed)} after warmup, ${mib(heapEnd.heapUsed)} at the end: ${growth >= 0 ? "+" : ""}${mib(growth)} (allowed ${mib(allowed)})`);
  check(run, "server survived", server.alive, server.alive ? "answering" : "the server process died");
  check(run, "no library errors logged", stats.libraryErrors === 0, `${stats.libraryErrors} errors, ${stats.libraryWarnings} warnings ${stats.firstLibraryLines.join(" | ")}`);
  return {
    warmup,
    main,
    heapWarm,
    heapEnd,
    heapGrowth: growth,
    heapAllowed: allowed,
    wakes: stats.wakes - startStats.wakes,
    sleeps: stats.sleeps - startStats.sleeps,
    stats,
  };
}

/** Kills the server under traffic, then reads every acknowledged actor back through a new registry. */
async function killPhase(run: Run, config: ServerConfig, serverOptions: ConstructorParameters<typeof Worker>[3], acked: Array<Record<string, number>>) {
  log(`killing the server (SIGKILL) under traffic, ${profile.tailSeconds} s in`);
  const traffic = { keys: profile.keys, ...profile.workers, seconds: profile.tailSeconds * 2, sweep: false };
  const tailRun = run.clients[0].call("mixed", traffic, 300_000);
  await sleep(profile.tailSeconds * 1000);
  run.server.kill();
  await run.server.exited;
  const tail = await tailRun;

  const highest: Record<string, number> = {};
  for (const byKey of [...acked, tail.acked]) {
    for (const [key, count] of Object.entries(byKey)) highest[key] = Math.max(highest[key] ?? 0, count);
  }
  const verifier = new Worker<ServerApi>("verifier", "soak-server.ts", [JSON.stringify({ ...config, verify: true })], serverOptions);
  try {
    await verifier.ready;
    const stored = await verifier.call("counts", Object.keys(highest), 600_000);
    await verifier.call("shutdown", undefined);
    const lost = Object.entries(highest).filter(([key, count]) => !(stored[key] >= count));
    return { tail, actors: Object.keys(highest).length, lost: lost.map(([key, count]) => ({ key, acked: count, stored: stored[key] })) };
  } finally {
    await verifier.stop();
  }
}

/** A phase's result without its per-key acknowledgements, which only the lost-write check needs. */
function withoutAcks<T extends { acked: unknown }>(result: T): Omit<T, "acked"> {
  const copy: Partial<T> = { ...result };
  delete copy.acked;
  return copy as Omit<T, "acked">;
}

async function main() {
  const limit = hardFileLimit();
  const serverFds = profile.sockets + profile.slowHeaders + profile.slowBodies + 1000;
  if (limit < serverFds) {
    throw new Error(`the server needs about ${fmt(serverFds)} file descriptors and the hard limit is ${fmt(limit)}: raise it (ulimit -Hn) or pass a smaller --sockets`);
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), "express-actors-soak-"));
  const started = Date.now();
  const config: ServerConfig = {
    dir,
    sleepTimeout: profile.sleepTimeout,
    headersTimeout: profile.headersTimeout,
    requestTimeout: profile.requestTimeout,
    connectionsCheckingInterval: profile.connectionsCheckingInterval,
  };
  const serverOptions = { nodeArgs: ["--expose-gc"], tsconfig: options.sources ? undefined : path.join(ROOT, "bench", "tsconfig.json") };
  const run: Run = { server: new Worker<ServerApi>("server", "soak-server.ts", [JSON.stringify(config)], serverOptions), clients: [], checks: [] };
  try {
    const { port } = (await run.server.ready) as { port: number };
    const clientCount = Math.max(1, Math.ceil(profile.sockets / Math.min(SOCKETS_PER_CLIENT, limit - 500)));
    for (let i = 0; i < clientCount; i++) run.clients.push(new Worker<LoadApi>(`clients ${i + 1}`, "soak-load.ts", [String(port)]));
    await Promise.all(run.clients.map((c) => c.ready));
    log(`server on 127.0.0.1:${port} (${options.sources ? "lib/ sources" : "dist/"}), ${clientCount} client process(es), store in ${dir}`);

    const sockets = await socketsPhase(run);
    const { slow, stats: slowStats } = await slowlorisPhase(run);
    const mixed = await mixedPhase(run, slowStats);
    const killed = await killPhase(run, config, serverOptions, [slow.acked, mixed.warmup.acked, mixed.main.acked]);
    const acknowledged = slow.acknowledged + mixed.warmup.acknowledged + mixed.main.acknowledged + killed.tail.acknowledged;
    const lostText = killed.lost.slice(0, 10).map((l) => `${l.key} acked ${l.acked}, stored ${l.stored}`).join(", ");
    check(run, "no lost acknowledged write", killed.lost.length === 0, `${fmt(acknowledged)} writes acknowledged on ${fmt(killed.actors)} actors; lost: ${lostText || "none"}`);

    const result = {
      profile,
      short: options.short,
      sources: options.sources,
      node: process.version,
      cpus: `${os.cpus()[0]?.model.trim()} × ${os.cpus().length}`,
      date: new Date().toISOString(),
      seconds: (Date.now() - started) / 1000,
      sockets,
      slowloris: { ...withoutAcks(slow), uploadsStarted: slowStats.uploadsStarted, uploadsAborted: slowStats.uploadsAborted },
      mixed: {
        ...mixed,
        warmup: withoutAcks(mixed.warmup),
        main: withoutAcks(mixed.main),
        // Failures are expected once the server is gone: only their number is kept.
        tail: { ...withoutAcks(killed.tail), errors: killed.tail.errors.length },
        acknowledged,
        tailAcknowledged: killed.tail.acknowledged,
        actors: killed.actors,
        lost: killed.lost.length,
      },
      checks: run.checks,
    };
    printReport(result);
    if (options.json) writeFileSync(options.json, JSON.stringify(result, null, 2));
    return result;
  } finally {
    run.server.kill();
    await Promise.all(run.clients.map((c) => c.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What --json writes; __tests__/soak.test.ts reads it. */
export type SoakResult = Awaited<ReturnType<typeof main>>;

main().then(
  (result) => process.exit(result.checks.every((c) => c.ok) ? 0 : 1),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
