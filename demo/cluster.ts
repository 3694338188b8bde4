// `npm run demo:cluster`: the demo as three processes on one machine, one cluster (docs/clusters.md).
// They share PostgreSQL ($DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test) and Redis
// ($REDIS_URL, default redis://127.0.0.1:6379); ports 3001-3003, or $DEMO_CLUSTER_PORTS (comma-separated).
// Ctrl-C (or SIGTERM) shuts every node down: each saves its actors and releases its leases.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
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
    nodes.delete(port);
    if (stopping) {
      if (nodes.size === 0) process.exit(process.exitCode ?? 0);
    } else if (!ready) {
      console.error(`[${port}] exited (${signal ?? code}) while starting; stopping the other nodes`);
      stop("SIGTERM", 1);
    } else {
      // Killed on purpose, to watch a failure: the other nodes take its actors over.
      console.error(`[${port}] exited (${signal ?? code}); ${nodes.size} node(s) still running`);
      if (nodes.size === 0) process.exit(0);
    }
  });
  nodes.set(port, child);
  return child;
}

function stop(signal: NodeJS.Signals, exitCode = 0) {
  if (stopping) return;
  stopping = true;
  process.exitCode = exitCode;
  if (nodes.size === 0) process.exit(exitCode);
  for (const child of nodes.values()) child.kill(signal);
}

/** Until the node's /health answers 200: it is listening and Redis has confirmed its heartbeat. */
async function healthy(port: number) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && !stopping) {
    const res = await fetch(`http://127.0.0.1:${port}/registry/health`).catch(() => undefined);
    if (res?.status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the node on port ${port} did not become healthy`);
}

async function main() {
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  for (const port of ports) startNode(port);
  await Promise.all(ports.map(healthy));
  ready = true;
  const urls = ports.map((port) => `http://localhost:${port}`);
  const query = `'X-RivetKit-Actor-Query: {"getOrCreateForKey":{"name":"counter","key":["demo"]}}'`;
  console.log(`
express-actors demo cluster: ${ports.length} nodes ready, sharing PostgreSQL (${database}, table demo_actors)
and Redis (${redis}).

Open the page on any of them: ${urls.map((url) => url + "/").join("  ")}
The counter, the live feed and the chat work from every node: a request or a socket for an actor
another node owns is forwarded there. Open the chat on two nodes: both pages share one room.

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
