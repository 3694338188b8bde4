// express-actors under node:cluster (docs/clusters.md#nodecluster-and-pm2): `npm run demo:node-cluster`.
// The primary forks $WORKERS workers (default 2) and forks a new one when one dies. Every worker
// shares the public port $PORT (default 3000) and also listens on a port of its own, which it
// advertises: a request another worker forwards to it must reach this worker, not the shared port.
// Under PM2 (exec_mode "cluster") PM2 is the primary and runs only the worker part of this file.
import cluster, { type Worker } from "node:cluster";
import { randomBytes } from "node:crypto";
import * as http from "node:http";
import type { AddressInfo, ListenOptions } from "node:net";
import express from "express";
import expressWs from "express-ws";
import { actor, actorMiddleware, setup } from "express-actors";
import { redisCluster } from "express-actors/cluster/redis";
import { postgresStore } from "express-actors/stores/postgres";

const env = process.env;
const log = (msg: string, fields: object = {}) => console.log(JSON.stringify({ msg, pid: process.pid, ...fields }));

/**
 * Counts POSTs and socket messages; shows which worker received the request or socket (onAuth runs
 * there) and which one runs the actor.
 */
const counter = actor({
  state: { count: 0, activations: [] as number[] },
  onStart: (c) => {
    c.state.activations.push(process.pid);
  },
  onAuth: () => ({ edge: process.pid }),
  onFetch: (c, request, { auth }) => {
    if (request.method === "POST") c.state.count++;
    return Response.json({ ...c.state, edge: auth?.edge, owner: process.pid });
  },
  onWebSocket: (c, ws, { auth }) => {
    const reply = () => ws.send(JSON.stringify({ count: c.state.count, edge: auth?.edge, owner: process.pid }));
    reply();
    ws.addEventListener("message", () => {
      c.state.count++;
      reply();
    });
  },
});

function primary() {
  // Every worker must sign with the same secret: made once here unless given.
  const secret = env.ACTORS_CLUSTER_SECRET ?? randomBytes(24).toString("hex");
  const live = new Set<Worker>();
  let stopping = false;
  const fork = (index: number) => {
    if (stopping) return;
    const started = Date.now();
    const worker = cluster.fork({ WORKER_INDEX: String(index), ACTORS_CLUSTER_SECRET: secret });
    live.add(worker);
    worker.on("exit", (code, signal) => {
      live.delete(worker);
      log("worker exited", { worker: worker.process.pid, code, signal });
      if (stopping && live.size === 0) process.exit(0);
      // A worker that dies at once (bad config, Redis down) is not forked again in a tight loop.
      if (!stopping) setTimeout(() => fork(index), Date.now() - started < 5000 ? 1000 : 0);
    });
  };
  for (let i = 0; i < Number(env.WORKERS ?? 2); i++) fork(i);
  const stop = () => {
    stopping = true;
    if (live.size === 0) process.exit(0);
    for (const worker of live) worker.process.kill("SIGTERM");
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

async function worker() {
  const app = express();
  const publicServer = http.createServer(app);
  const ownServer = http.createServer(app);
  // Both serve the same app, WebSockets included: forwarded sockets arrive on the own port.
  expressWs(app, publicServer);
  expressWs(app, ownServer);

  // The own port first, so its URL is known to setup(). `exclusive`: not shared with the other
  // workers (port 0 is then a free port of this worker's own, where a shared listen(0) would not be).
  const index = Number(env.NODE_APP_INSTANCE ?? env.WORKER_INDEX ?? 0);
  const ownHost = env.OWN_HOST ?? "127.0.0.1";
  await listen(ownServer, { host: ownHost, port: env.OWN_PORT ? Number(env.OWN_PORT) + index : 0, exclusive: true });
  const ownPort = (ownServer.address() as AddressInfo).port;
  // Where the other workers, on any machine, reach this one (in a container: the container's address).
  const advertise = `http://${env.ADVERTISE_HOST ?? ownHost}:${ownPort}/registry`;

  const registry = setup({
    use: { counter },
    store: postgresStore({ connectionString: env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test" }),
    cluster: redisCluster({
      url: env.REDIS_URL ?? "redis://127.0.0.1:6379",
      advertise,
      secret: env.ACTORS_CLUSTER_SECRET ?? "",
      leaseMs: Number(env.LEASE_MS ?? 10_000),
      prefix: env.CLUSTER_PREFIX,
    }),
  });
  app.use("/registry", actorMiddleware(registry));

  // Join the shared port only once Redis has confirmed this worker, so no client gets its 503.
  while ((await fetch(`http://${ownHost}:${ownPort}/registry/health`).catch(() => undefined))?.status !== 200) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await listen(publicServer, { host: env.HOST, port: Number(env.PORT ?? 3000) });
  log("worker ready", { port: (publicServer.address() as AddressInfo).port, advertise });
  process.send?.("ready"); // PM2's wait_ready

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    publicServer.close(); // the primary stops handing this worker connections
    await registry.shutdown(); // in-flight requests finish, state is saved, leases are released
    ownServer.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop); // PM2 stops with SIGINT
}

function listen(server: http.Server, options: ListenOptions) {
  return new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

if (cluster.isPrimary) primary();
else void worker();
