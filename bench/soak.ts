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
// --minutes: length of the mixed phase (default 10). --short: the CI version (about 45 s).
// --sources: run the server on lib/ instead of the built dist/. Exits 1 when a check fails.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { LoadApi, MixedResult, SlowlorisResult } from "./soak-load";
import { Worker } from "./soak-ipc";
import type { Memory, ServerApi, ServerConfig, ServerStats } from "./soak-server";

interface Profile {
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

/** Heap growth allowed from the warmup to the end, both after GC with everything asleep. */
const HEAP_TOLERANCE = { fraction: 0.1, bytes: 2 * 1024 * 1024 };
/** Sockets per client process: each process holds fewer descriptors than the soft limit allows. */
const SOCKETS_PER_CLIENT = 2500;

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
  const minutes = number("minutes") ?? 10;
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
        mixedSeconds: minutes * 60,
        tailSeconds: 3,
        workers: { http: 16, sse: 4, ws: 4 },
      };
  profile.sockets = number("sockets") ?? profile.sockets;
  return { profile, short, sources: flags.has("sources"), json: flags.get("json") as string | undefined };
}

const { profile, short, sources, json } = parseArgs(process.argv.slice(2));
const ROOT = path.resolve(__dirname, "..");

const MiB = 1024 * 1024;
const fmt = (n: number) => n.toLocaleString("en-US");
const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
const kib = (bytes: number) => `${(bytes / 1024).toFixed(2)} KiB`;
const log = (line: string) => console.log(`soak: ${line}`);

/** The hard limit on open files, which the workers raise their soft limit to. */
function hardFileLimit(): number {
  if (process.platform === "win32") return Infinity;
  const out = spawnSync("/bin/sh", ["-c", "ulimit -Hn"], { encoding: "utf8" }).stdout.trim();
  return out === "unlimited" ? Infinity : Number(out);
}

/** A phase's result without its per-key acknowledgements, which only the lost-write check needs. */
function withoutAcks<T extends { acked: unknown }>(result: T): Omit<T, "acked"> {
  const copy: Partial<T> = { ...result };
  delete copy.acked;
  return copy as Omit<T, "acked">;
}

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

async function main() {
  const limit = hardFileLimit();
  const serverFds = profile.sockets + profile.slowHeaders + profile.slowBodies + 1000;
  if (limit < serverFds) {
    throw new Error(`the server needs about ${fmt(serverFds)} file descriptors and the hard limit is ${fmt(limit)}: raise it (ulimit -Hn) or pass a smaller --sockets`);
  }
  const perClient = Math.min(SOCKETS_PER_CLIENT, limit - 500);
  const dir = mkdtempSync(path.join(os.tmpdir(), "express-actors-soak-"));
  const started = Date.now();
  const checks: Check[] = [];
  const check = (name: string, ok: boolean, detail: string) => {
    checks.push({ name, ok, detail });
    if (!ok) log(`FAILED ${name}: ${detail}`);
  };
  const config: ServerConfig = {
    dir,
    sleepTimeout: profile.sleepTimeout,
    headersTimeout: profile.headersTimeout,
    requestTimeout: profile.requestTimeout,
    connectionsCheckingInterval: profile.connectionsCheckingInterval,
  };
  const serverOptions = { nodeArgs: ["--expose-gc"], tsconfig: sources ? undefined : path.join(ROOT, "bench", "tsconfig.json") };
  const server = new Worker<ServerApi>("server", "soak-server.ts", [JSON.stringify(config)], serverOptions);
  const clients: Array<Worker<LoadApi>> = [];
  try {
    const { port } = (await server.ready) as { port: number };
    const clientCount = Math.max(1, Math.ceil(profile.sockets / perClient));
    for (let i = 0; i < clientCount; i++) clients.push(new Worker<LoadApi>(`clients ${i + 1}`, "soak-load.ts", [String(port)]));
    await Promise.all(clients.map((c) => c.ready));
    log(`server on 127.0.0.1:${port} (${sources ? "lib/ sources" : "dist/"}), ${clientCount} client process(es), store in ${dir}`);

    // --- 1. sockets ---
    // A first small batch loads and optimizes the code paths, so that the baseline excludes one-time costs.
    await clients[0].call("openSockets", { count: 100, batch: 100, rooms: 10, offset: 0 });
    await clients[0].call("closeAll", { batch: 100 });
    await server.call("quiet", 10_000);
    const warmStats = await server.call("stats", undefined);
    const before = await server.call("memory", undefined);
    log(`opening ${fmt(profile.sockets)} WebSockets in batches of ${profile.socketBatch} per client process`);
    const openStart = Date.now();
    const rooms = Math.ceil(profile.sockets / 100);
    const share = Math.ceil(profile.sockets / clients.length);
    const opened = await Promise.all(
      clients.map((c, i) =>
        c.call("openSockets", { count: Math.min(share, profile.sockets - i * share), batch: profile.socketBatch, rooms, offset: i * share }, 600_000),
      ),
    );
    const openMs = Date.now() - openStart;
    const openedCount = opened.reduce((n, o) => n + o.opened, 0);
    const firstPing = await Promise.all(clients.map((c) => c.call("pingAll", undefined)));
    const held = await server.call("memory", undefined);
    const heldStats = await server.call("stats", undefined);
    log(`${fmt(openedCount)} open in ${(openMs / 1000).toFixed(1)} s; holding them ${profile.holdSeconds} s`);
    await new Promise((resolve) => setTimeout(resolve, profile.holdSeconds * 1000));
    const secondPing = await Promise.all(clients.map((c) => c.call("pingAll", undefined)));
    const closed = await Promise.all(clients.map((c) => c.call("closeAll", { batch: profile.socketBatch }, 600_000)));
    const afterClose = (await server.call("quiet", 30_000)).stats;
    const released = await server.call("memory", undefined);
    const socketErrors = [...opened, ...firstPing, ...secondPing].flatMap((o) => o.errors).slice(0, 10);
    const sockets = {
      target: profile.sockets,
      opened: openedCount,
      openMs,
      serverOpen: heldStats.holdOpen,
      pingedAfterOpen: firstPing.reduce((n, p) => n + p.ok, 0),
      pingedAfterHold: secondPing.reduce((n, p) => n + p.ok, 0),
      closedCleanClient: closed.reduce((n, c) => n + c.clean, 0),
      closedCleanServer: afterClose.holdClosedClean - warmStats.holdClosedClean,
      closedOtherServer: afterClose.holdClosedOther - warmStats.holdClosedOther,
      stillOpenServer: afterClose.holdOpen,
      before,
      held,
      released,
      heapPerSocket: (held.heapUsed - before.heapUsed) / openedCount,
      rssPerSocket: (held.rss - before.rss) / openedCount,
      errors: socketErrors,
    };
    const n = profile.sockets;
    check("sockets opened", sockets.opened === n && sockets.serverOpen === n, `${fmt(sockets.opened)}/${fmt(n)} opened, ${fmt(sockets.serverOpen)} open on the server ${socketErrors.join("; ")}`);
    check("sockets answered while held", sockets.pingedAfterOpen === n && sockets.pingedAfterHold === n, `ping after open ${fmt(sockets.pingedAfterOpen)}, after ${profile.holdSeconds} s ${fmt(sockets.pingedAfterHold)}`);
    check(
      "sockets closed cleanly",
      sockets.closedCleanClient === n && sockets.closedCleanServer === n && sockets.stillOpenServer === 0,
      `client saw ${fmt(sockets.closedCleanClient)} clean closes, server ${fmt(sockets.closedCleanServer)} (${sockets.closedOtherServer} other, ${sockets.stillOpenServer} still open)`,
    );
    log(`per socket: heap ${kib(sockets.heapPerSocket)}, RSS ${kib(sockets.rssPerSocket)}`);

    // --- 2. slowloris ---
    log(`slowloris: ${profile.slowHeaders} connections trickling headers, ${profile.slowBodies} trickling bodies, 1 byte / ${profile.byteMs} ms`);
    const slowKeys = Array.from({ length: 20 }, (_, i) => `slow-${i}`);
    const slowDeadline = profile.requestTimeout + 4 * profile.connectionsCheckingInterval + 10_000;
    const slow: SlowlorisResult = await clients[0].call(
      "slowloris",
      { headers: profile.slowHeaders, bodies: profile.slowBodies, keys: slowKeys, byteMs: profile.byteMs, probes: 4, deadlineMs: slowDeadline },
      slowDeadline + 60_000,
    );
    const slowStats = await server.call("stats", undefined);
    check("slowloris did not block", slow.probes.failed === 0 && slow.probes.okWhileAllOpen > 0, `${slow.probes.ok} normal writes answered (${slow.probes.okWhileAllOpen} while every slow connection was open), ${slow.probes.failed} failed ${slow.probes.errors.join("; ")}`);
    check(
      "slow connections cut by the server",
      slow.headers.openAtDeadline === 0 && slow.bodies.openAtDeadline === 0,
      `headers: ${slow.headers.closedByServer}/${slow.headers.connections} cut (${slow.headers.answered408} with 408); bodies: ${slow.bodies.closedByServer}/${slow.bodies.connections} cut (${slow.bodies.answered408} with 408)`,
    );

    // --- 3. mixed ---
    const { workers } = profile;
    log(`mixed: warmup of ${profile.warmupSeconds} s over ${fmt(profile.keys)} actors (sleepTimeout ${profile.sleepTimeout} ms), ${workers.http} HTTP writers, ${workers.sse} SSE readers, ${workers.ws} WebSocket sessions`);
    const mixedArg = { keys: profile.keys, ...workers };
    const warmup = await clients[0].call("mixed", { ...mixedArg, seconds: profile.warmupSeconds, sweep: true }, profile.warmupSeconds * 1000 + 600_000);
    const warmQuiet = await server.call("quiet", 60_000);
    const heapWarm = await server.call("memory", undefined);
    log(`after warmup: heap ${mib(heapWarm.heapUsed)}, RSS ${mib(heapWarm.rss)}; mixed traffic for ${profile.mixedSeconds} s`);
    const main = await clients[0].call("mixed", { ...mixedArg, seconds: profile.mixedSeconds, sweep: false }, profile.mixedSeconds * 1000 + 300_000);
    const endQuiet = await server.call("quiet", 60_000);
    const heapEnd = await server.call("memory", undefined);
    const endStats = await server.call("stats", undefined);
    const growth = heapEnd.heapUsed - heapWarm.heapUsed;
    const allowed = Math.max(HEAP_TOLERANCE.bytes, HEAP_TOLERANCE.fraction * heapWarm.heapUsed);
    check("mixed traffic answered", warmup.http.failed + warmup.sse.failed + warmup.ws.failed + main.http.failed + main.sse.failed + main.ws.failed === 0, [...warmup.errors, ...main.errors].slice(0, 10).join("; ") || "no failures");
    check("every actor slept at the end", warmQuiet.quiet && endQuiet.quiet, `awake ${endQuiet.stats.counterAwake}, streams ${endQuiet.stats.sseOpen}, sessions ${endQuiet.stats.sessionsOpen}`);
    check("heap flat after GC", growth <= allowed, `${mib(heapWarm.heapUsed)} after warmup, ${mib(heapEnd.heapUsed)} at the end: ${growth >= 0 ? "+" : ""}${mib(growth)} (allowed ${mib(allowed)})`);
    check("server survived", server.alive, server.alive ? "answering" : "the server process died");
    check("no library errors logged", endStats.libraryErrors === 0, `${endStats.libraryErrors} errors, ${endStats.libraryWarnings} warnings ${endStats.firstLibraryLines.join(" | ")}`);

    // Killed under traffic: only what the store holds counts from here.
    log(`killing the server (SIGKILL) under traffic, ${profile.tailSeconds} s in`);
    const tailRun = clients[0].call("mixed", { ...mixedArg, seconds: profile.tailSeconds * 2, sweep: false }, 300_000);
    await new Promise((resolve) => setTimeout(resolve, profile.tailSeconds * 1000));
    server.kill();
    await server.exited;
    const tail = await tailRun;

    const acked: Record<string, number> = {};
    for (const run of [slow, warmup, main, tail]) {
      for (const [key, count] of Object.entries(run.acked)) acked[key] = Math.max(acked[key] ?? 0, count);
    }
    const verifier = new Worker<ServerApi>("verifier", "soak-server.ts", [JSON.stringify({ ...config, verify: true })], serverOptions);
    await verifier.ready;
    const stored = await verifier.call("counts", Object.keys(acked), 600_000);
    await verifier.call("shutdown", undefined);
    await verifier.stop();
    const lost = Object.entries(acked).filter(([key, count]) => !(stored[key] >= count));
    const acknowledged = slow.acknowledged + warmup.acknowledged + main.acknowledged + tail.acknowledged;
    check("no lost acknowledged write", lost.length === 0, `${fmt(acknowledged)} writes acknowledged on ${fmt(Object.keys(acked).length)} actors; lost: ${lost.length ? lost.slice(0, 10).map(([k, c]) => `${k} acked ${c}, stored ${stored[k]}`).join(", ") : "none"}`);

    const result = {
      profile,
      short,
      sources,
      node: process.version,
      cpus: `${os.cpus()[0]?.model.trim()} × ${os.cpus().length}`,
      seconds: (Date.now() - started) / 1000,
      sockets,
      slowloris: { ...withoutAcks(slow), uploadsStarted: slowStats.uploadsStarted, uploadsAborted: slowStats.uploadsAborted },
      mixed: {
        warmup: withoutAcks(warmup),
        main: withoutAcks(main),
        // Failures are expected once the server is gone.
        tail: { ...withoutAcks(tail), errors: tail.errors.length },
        heapWarm,
        heapEnd,
        heapGrowth: growth,
        heapAllowed: allowed,
        wakes: endStats.wakes - slowStats.wakes,
        sleeps: endStats.sleeps - slowStats.sleeps,
        sseOpened: endStats.sseOpened - slowStats.sseOpened,
        acknowledged,
        tailAcknowledged: tail.acknowledged,
        actors: Object.keys(acked).length,
        lost: lost.length,
      },
      checks,
    };
    report(result, main, endStats);
    if (json) writeFileSync(json, JSON.stringify(result, null, 2));
    return result;
  } finally {
    server.kill();
    await Promise.all(clients.map((c) => c.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

function report(
  r: {
    seconds: number;
    node: string;
    cpus: string;
    sockets: { target: number; openMs: number; before: Memory; held: Memory; released: Memory; heapPerSocket: number; rssPerSocket: number };
    slowloris: Omit<SlowlorisResult, "acked"> & { uploadsAborted: number };
    mixed: { heapWarm: Memory; heapEnd: Memory; heapGrowth: number; heapAllowed: number; wakes: number; acknowledged: number; tailAcknowledged: number; actors: number; lost: number };
    checks: Check[];
  },
  main: MixedResult,
  stats: ServerStats,
) {
  const s = r.sockets;
  const m = r.mixed;
  const rate = (count: number) => `${fmt(count)} (${fmt(Math.round(count / profile.mixedSeconds))}/s)`;
  const slowLine = (what: string, x: SlowlorisResult["headers"]) =>
    `| slowloris | ${fmt(x.connections)} ${what} | ${x.closedByServer} cut by the server (${x.answered408} with 408) after ${fmt(x.lifetimeMinMs ?? 0)}–${fmt(x.lifetimeMaxMs ?? 0)} ms |`;
  const lines = [
    "",
    `Soak${short ? " (short)" : `, ${profile.mixedSeconds / 60} min`} — ${r.cpus} · Node ${r.node} · ${new Date().toISOString()} · ${r.seconds.toFixed(0)} s in all`,
    "",
    "| phase | case | result |",
    "|---|---|---|",
    `| sockets | ${fmt(s.target)} WebSockets held by one process | opened in ${(s.openMs / 1000).toFixed(1)} s, all answered a ping after ${profile.holdSeconds} s, all closed 1000 both ways |`,
    `| sockets | memory per socket (after GC) | heap ${kib(s.heapPerSocket)}, RSS ${kib(s.rssPerSocket)} |`,
    `| sockets | server heap / RSS: before, held, closed | ${mib(s.before.heapUsed)} / ${mib(s.before.rss)}, ${mib(s.held.heapUsed)} / ${mib(s.held.rss)}, ${mib(s.released.heapUsed)} / ${mib(s.released.rss)} |`,
    slowLine(`headers trickled (headersTimeout ${fmt(profile.headersTimeout)} ms)`, r.slowloris.headers),
    slowLine(`bodies trickled (requestTimeout ${fmt(profile.requestTimeout)} ms)`, r.slowloris.bodies),
    `| slowloris | normal writes meanwhile (HTTP + WebSocket) | ${fmt(r.slowloris.probes.ok)} answered, ${fmt(r.slowloris.probes.okWhileAllOpen)} while every slow connection was open, ${r.slowloris.probes.failed} failed; ${r.slowloris.uploadsAborted} uploads saw their request end |`,
    `| mixed, ${profile.mixedSeconds} s | HTTP writes (count++, saved before the reply) | ${rate(main.http.ok)}, ${main.http.failed} failed |`,
    `| mixed, ${profile.mixedSeconds} s | SSE streams opened and left | ${rate(main.sse.ok)}, ${fmt(main.sse.events)} events, ${main.sse.failed} failed |`,
    `| mixed, ${profile.mixedSeconds} s | WebSocket sessions (writes saved before the reply) | ${rate(main.ws.ok)}, ${fmt(main.ws.messages)} writes, ${main.ws.failed} failed |`,
    `| mixed, ${profile.mixedSeconds} s | actors woken from the fileStore (${fmt(profile.keys)} keys, sleepTimeout ${profile.sleepTimeout} ms) | ${fmt(m.wakes)} wakes (warmup included) |`,
    `| mixed | heap after GC, all asleep: after warmup → end | ${mib(m.heapWarm.heapUsed)} → ${mib(m.heapEnd.heapUsed)} (${m.heapGrowth >= 0 ? "+" : ""}${mib(m.heapGrowth)}, allowed ${mib(m.heapAllowed)}); RSS ${mib(m.heapWarm.rss)} → ${mib(m.heapEnd.rss)} |`,
    `| mixed | killed (SIGKILL) ${profile.tailSeconds} s into more traffic, store reopened in a new registry | ${fmt(m.acknowledged)} acknowledged writes in all phases (${fmt(m.tailAcknowledged)} in the last ${profile.tailSeconds} s) on ${fmt(m.actors)} actors, ${m.lost} lost |`,
    `| all | library log lines | ${stats.libraryErrors} errors, ${stats.libraryWarnings} warnings |`,
    "",
    ...r.checks.map((c) => `${c.ok ? "PASS" : "FAIL"}  ${c.name}: ${c.detail}`),
    "",
  ];
  console.log(lines.join("\n"));
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
