// `npm run demo:cluster`: the demo as three processes on one machine, one cluster (docs/clusters.md).
// They share PostgreSQL ($DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test) and Redis
// ($REDIS_URL, default redis://127.0.0.1:6379); ports 3001-3003, or $DEMO_CLUSTER_PORTS (comma-separated).
// A node that shuts down cleanly (SIGTERM, as a deploy restarts it) is started again on its port; one
// that is killed (SIGKILL, a crash) stays down. Commands on stdin: restart, kill, start <port>; nodes.
// Ctrl-C (or SIGTERM) shuts every node down: each saves its actors and releases its leases.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { createInterface } from "node:readline";

const ports = (process.env.DEMO_CLUSTER_PORTS ?? "3001,3002,3003").split(",").map((port) => Number(port.trim()));
const redis = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const database = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
// Shared by the nodes of this run only: a node of another run cannot forward into this one.
const secret = process.env.DEMO_CLUSTER_SECRET ?? randomBytes(24).toString("hex");

const nodes = new Map<number, ChildProcess>();
let stopping = false;
let ready = false;

function startNode(port: number): ChildProcess {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "server.ts")], {
    cwd: path.join(__dirname, ".."),
    env: {
      ...process.env,
      PORT: String(port),
      DEMO_STORE: "postgres",
      DATABASE_URL: database,
      DEMO_CLUSTER_REDIS: redis,
      DEMO_CLUSTER_SECRET: secret,
      DEMO_CLUSTER_PREFIX: process.env.DEMO_CLUSTER_PREFIX ?? "express-actors-demo:cluster:",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream }).on("line", (line) => console.log(`[${port}] ${line}`));
  }
  child.once("exit", (code, signal) => {
    if (nodes.get(port) === child) nodes.delete(port);
    if (stopping) {
      if (nodes.size === 0) process.exit(process.exitCode ?? 0);
    } else if (!ready) {
      console.error(`[${port}] exited (${signal ?? code}) while starting; stopping the other nodes`);
      stop("SIGTERM", 1);
    } else if (code === 0) {
      // The node saved its actors and released its leases (its SIGTERM handler): a restart, as a
      // deploy does it. Meanwhile the other nodes serve its actors; its sockets reconnect to them.
      console.log(`[${port}] shut down cleanly (pid ${child.pid}); starting it again on port ${port}`);
      restart(port);
    } else {
      // Killed on purpose, to watch a failure: the other nodes take its actors over once the leases expire.
      console.error(`[${port}] exited (${signal ?? code}); ${nodes.size} node(s) still running (\`start ${port}\` starts it again)`);
      if (nodes.size === 0) process.exit(0);
    }
  });
  nodes.set(port, child);
  return child;
}

function restart(port: number) {
  const child = startNode(port);
  healthy(port, child).then(
    () => console.log(`[${port}] running again: pid ${child.pid}, healthy`),
    // One that exited has said so already (the exit handler).
    (err: Error) => child.exitCode === null && child.signalCode === null && console.error(`[${port}] ${err.message}`),
  );
}

function stop(signal: NodeJS.Signals, exitCode = 0) {
  if (stopping) return;
  stopping = true;
  process.exitCode = exitCode;
  if (nodes.size === 0) process.exit(exitCode);
  for (const child of nodes.values()) child.kill(signal);
}

/** Until the node's /health answers 200: it is listening and Redis has confirmed its heartbeat. */
async function healthy(port: number, child: ChildProcess) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && !stopping && child.exitCode === null && child.signalCode === null) {
    const res = await fetch(`http://127.0.0.1:${port}/registry/health`).catch(() => undefined);
    if (res?.status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the node on port ${port} did not become healthy`);
}

const COMMANDS = `Commands (type them here): restart <port>  (SIGTERM: the node drains, then starts again),
kill <port>  (SIGKILL: it stays down), start <port>  (starts a node that is down), nodes  (ports and pids).`;

/** Lines typed into the launcher's terminal, to restart or kill a node without looking its pid up. */
function command(line: string) {
  const [verb, arg] = line.trim().split(/\s+/);
  if (!verb) return;
  const port = Number(arg);
  const child = nodes.get(port);
  if (verb === "nodes") {
    for (const each of ports) console.log(`  ${each}: ${nodes.has(each) ? `pid ${nodes.get(each)!.pid}` : "down"}`);
  } else if ((verb === "restart" || verb === "kill" || verb === "start") && !ports.includes(port)) {
    console.log(`${verb} what? one of the ports ${ports.join(", ")}`);
  } else if (verb === "start") {
    if (child) console.log(`[${port}] is running (pid ${child.pid})`);
    else restart(port);
  } else if (verb === "restart" || verb === "kill") {
    if (!child) console.log(`[${port}] is down: \`start ${port}\``);
    else child.kill(verb === "restart" ? "SIGTERM" : "SIGKILL");
  } else console.log(COMMANDS);
}

/** False when started in the background (`npm run demo:cluster &`): reading the terminal there would stop it (SIGTTIN). */
function inForeground(): boolean {
  if (!process.stdin.isTTY) return true;
  try {
    const stat = readFileSync("/proc/self/stat", "utf8");
    const [, , pgrp, , , tpgid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return pgrp === tpgid;
  } catch {
    return true; // no /proc (macOS): taken as the foreground
  }
}

async function main() {
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  const started = ports.map((port) => [port, startNode(port)] as const);
  await Promise.all(started.map(([port, child]) => healthy(port, child)));
  ready = true;
  const commands = inForeground();
  if (commands) {
    createInterface({ input: process.stdin }).on("line", (line) => {
      if (!stopping) command(line);
    });
  }
  const urls = ports.map((port) => `http://localhost:${port}`);
  const query = `'X-RivetKit-Actor-Query: {"getOrCreateForKey":{"name":"counter","key":["demo"]}}'`;
  console.log(`
express-actors demo cluster: ${ports.length} nodes ready, sharing PostgreSQL (${database}, table demo_actors)
and Redis (${redis}). Pids: ${started.map(([port, child]) => `${port} → ${child.pid}`).join(", ")}.

Open the page on any of them: ${urls.map((url) => url + "/").join("  ")}
The counter, the live feed and the chat work from every node: a request or a socket for an actor
another node owns is forwarded there.

# the chat across nodes, and a node restarted while you chat
Open ${urls[0]}/ and ${urls[1]}/ (two windows) and join the same room on both: the room lives
on the node of the page that joined first (${ports[0]}), the other page's socket is relayed to it. Restart that node:
type \`restart ${ports[0]}\` here, or \`kill -TERM <pid>\` from another terminal. It closes its sockets with
1012, both pages show "the node is restarting — reconnecting…" and get back into the room on another
node with the history intact, and this launcher starts the node again on its port.
A node killed (type \`kill ${ports[1]}\` here, or \`kill -9 <pid>\`) stays down: its actors answer 503 until
their leases expire (10 s), then another node takes them over; \`start ${ports[1]}\` brings it back.
${commands ? COMMANDS : "Commands are off: this launcher runs in the background, where reading the terminal would stop it."}

# one counter, incremented through each node in turn: one count, one owner
${urls.map((url) => `curl -X POST ${url}/registry/actors/raw/http/increment -H ${query}`).join("\n")}

# the live feed through a node that does not own it
curl -N ${urls[urls.length - 1]}/feed/demo/events

Ctrl-C stops every node (each saves its actors and releases its leases).
`);
}

main().catch((err) => {
  console.error(err.message);
  stop("SIGTERM", 1);
});
