// The table bench/soak.ts prints (markdown, as pasted into docs/performance.md).
import type { Check, Profile } from "./soak";
import type { MixedResult, SlowlorisResult } from "./soak-load";
import type { Memory, ServerStats } from "./soak-server";

const MiB = 1024 * 1024;
export const fmt = (n: number) => n.toLocaleString("en-US");
export const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
export const kib = (bytes: number) => `${(bytes / 1024).toFixed(2)} KiB`;
const signed = (bytes: number) => `${bytes >= 0 ? "+" : ""}${mib(bytes)}`;

export interface Report {
  profile: Profile;
  short: boolean;
  node: string;
  cpus: string;
  date: string;
  seconds: number;
  sockets: { target: number; openMs: number; before: Memory; held: Memory; released: Memory; heapPerSocket: number; rssPerSocket: number };
  slowloris: Omit<SlowlorisResult, "acked"> & { uploadsAborted: number };
  mixed: {
    main: Omit<MixedResult, "acked">;
    heapWarm: Memory;
    heapEnd: Memory;
    heapGrowth: number;
    heapAllowed: number;
    wakes: number;
    stats: ServerStats;
    acknowledged: number;
    tailAcknowledged: number;
    actors: number;
    lost: number;
  };
  checks: Check[];
}

export function printReport(r: Report): void {
  const { profile: p, sockets: s, slowloris: slow, mixed: m } = r;
  const rate = (count: number) => `${fmt(count)} (${fmt(Math.round(count / p.mixedSeconds))}/s)`;
  const cut = (what: string, x: SlowlorisResult["headers"]) =>
    `| slowloris | ${fmt(x.connections)} ${what} | ${fmt(x.closedByServer)} cut by the server (${fmt(x.answered408)} with 408) after ${fmt(x.lifetimeMinMs ?? 0)}–${fmt(x.lifetimeMaxMs ?? 0)} ms |`;
  const mixed = `mixed, ${p.mixedSeconds} s`;
  const lines = [
    "",
    `Soak${r.short ? " (short)" : `, ${p.mixedSeconds / 60} min`} — ${r.cpus} · Node ${r.node} · ${r.date} · ${r.seconds.toFixed(0)} s in all`,
    "",
    "| phase | case | result |",
    "|---|---|---|",
    `| sockets | ${fmt(s.target)} WebSockets held by one process | opened in ${(s.openMs / 1000).toFixed(1)} s, all answered a ping after ${p.holdSeconds} s, all closed 1000 both ways |`,
    `| sockets | memory per socket (after GC) | heap ${kib(s.heapPerSocket)}, RSS ${kib(s.rssPerSocket)} |`,
    `| sockets | server heap / RSS: before, held, closed | ${mib(s.before.heapUsed)} / ${mib(s.before.rss)}, ${mib(s.held.heapUsed)} / ${mib(s.held.rss)}, ${mib(s.released.heapUsed)} / ${mib(s.released.rss)} |`,
    cut(`headers trickled (headersTimeout ${fmt(p.headersTimeout)} ms)`, slow.headers),
    cut(`bodies trickled (requestTimeout ${fmt(p.requestTimeout)} ms)`, slow.bodies),
    `| slowloris | normal writes meanwhile (HTTP + WebSocket) | ${fmt(slow.probes.ok)} answered, ${fmt(slow.probes.okWhileAllOpen)} while every slow connection was open, ${slow.probes.failed} failed; ${fmt(slow.uploadsAborted)} uploads saw their request end |`,
    `| ${mixed} | HTTP writes (count++, saved before the reply) | ${rate(m.main.http.ok)}, ${m.main.http.failed} failed |`,
    `| ${mixed} | SSE streams opened and left | ${rate(m.main.sse.ok)}, ${fmt(m.main.sse.events)} events, ${m.main.sse.failed} failed |`,
    `| ${mixed} | WebSocket sessions (writes saved before the reply) | ${rate(m.main.ws.ok)}, ${fmt(m.main.ws.messages)} writes, ${m.main.ws.failed} failed |`,
    `| ${mixed} | actors woken from the fileStore (${fmt(p.keys)} keys, sleepTimeout ${p.sleepTimeout} ms) | ${fmt(m.wakes)} wakes (warmup included) |`,
    `| mixed | heap after GC, all asleep: after warmup → end | ${mib(m.heapWarm.heapUsed)} → ${mib(m.heapEnd.heapUsed)} (${signed(m.heapGrowth)}, allowed ${mib(m.heapAllowed)}); RSS ${mib(m.heapWarm.rss)} → ${mib(m.heapEnd.rss)} |`,
    `| mixed | killed (SIGKILL) ${p.tailSeconds} s into more traffic, store reopened in a new registry | ${fmt(m.acknowledged)} acknowledged writes in all phases (${fmt(m.tailAcknowledged)} in the last ${p.tailSeconds} s) on ${fmt(m.actors)} actors, ${m.lost} lost |`,
    `| all | library log lines | ${m.stats.libraryErrors} errors, ${m.stats.libraryWarnings} warnings |`,
    "",
    ...r.checks.map((c) => `${c.ok ? "PASS" : "FAIL"}  ${c.name}: ${c.detail}`),
    "",
  ];
  console.log(lines.join("\n"));
}
