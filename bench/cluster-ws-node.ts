// One node of the cluster WebSocket cases: an echo actor, two of these sharing a redisStore and a
// redisCluster under the run's Redis prefix. Usage: cluster-ws-node.ts <name>. Answers "cpu" and
// "heap" (after a full GC: run it with --expose-gc) over IPC.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import expressWs from "express-ws";
import { actor, actorMiddleware, setup } from "express-actors";
import { redisCluster } from "express-actors/cluster/redis";
import { redisStore } from "express-actors/stores/redis";
import { sendToRunner } from "./common";
import { REDIS_URL } from "./stores";

const name = process.argv[2];
const prefix = process.env.BENCH_REDIS_PREFIX;
if (!name || !prefix) throw new Error("run this file through bench/run.ts: cluster-ws-node.ts <name>");

const echo = actor({
  onAuth: () => null,
  onWebSocket: (_c, ws) => {
    ws.addEventListener("message", (event) => ws.send(event.data));
  },
  // No sleep during the run: the owner must stay the owner, and idle sockets stay open.
  options: { sleepTimeout: 3_600_000 },
});

let registry: ReturnType<typeof setup> | undefined;
const server = createServer();
server.listen(0, "127.0.0.1", 4096, async () => {
  const { port } = server.address() as AddressInfo;
  registry = setup({
    use: { echo },
    store: redisStore({ url: REDIS_URL, prefix: `${prefix}cluster-ws-store:` }),
    cluster: redisCluster({
      url: REDIS_URL,
      advertise: `http://127.0.0.1:${port}/registry`,
      secret: "bench-cluster-secret-0123456789",
      prefix: `${prefix}cluster-ws:`,
    }),
  });
  const app = express();
  expressWs(app, server);
  app.use("/registry", actorMiddleware(registry));
  server.on("request", app);
  while ((await fetch(`http://127.0.0.1:${port}/registry/health`).catch(() => undefined))?.status !== 200) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  void sendToRunner({ type: "ready", port });
});
process.on("disconnect", () => void (registry?.shutdown() ?? Promise.resolve()).finally(() => process.exit(0)));
process.on("message", (m) => {
  if (m === "cpu") {
    const { user, system } = process.cpuUsage();
    void sendToRunner({ type: "cpu", micros: user + system });
  } else if (m === "heap") {
    (globalThis as { gc?: () => void }).gc?.();
    const { heapUsed, rss } = process.memoryUsage();
    void sendToRunner({ type: "heap", heapUsed, rss });
  }
});
