// One node of the forwarding-hop case: two of these share a redisStore and a redisCluster under the
// run's Redis prefix. Usage: cluster-node.ts <name>. The port is taken first, since `advertise` names it.
import { Agent, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import { createProxyMiddleware } from "http-proxy-middleware";
import { actor, actorMiddleware, setup } from "express-actors";
import { redisCluster } from "express-actors/cluster/redis";
import { redisStore } from "express-actors/stores/redis";
import { sendToRunner } from "./common";
import { REDIS_URL } from "./stores";

const name = process.argv[2];
const prefix = process.env.BENCH_REDIS_PREFIX;
if (!name || !prefix) throw new Error("run this file through bench/run.ts: cluster-node.ts <name>");

// The same payload as server.ts's hello, plus who served it, so the runner can check the hop happened.
const payload = { hello: "world", n: 1, node: name };

let registry: ReturnType<typeof setup> | undefined;
const server = createServer();
server.listen(0, "127.0.0.1", async () => {
  const { port } = server.address() as AddressInfo;
  registry = setup({
    // No sleep during the run: the owner must stay the owner between rounds.
    use: { hello: actor({ onAuth: () => null, onFetch: () => Response.json(payload), options: { sleepTimeout: 3_600_000 } }) },
    store: redisStore({ url: REDIS_URL, prefix: `${prefix}cluster-store:` }),
    cluster: redisCluster({
      url: REDIS_URL,
      advertise: `http://127.0.0.1:${port}/registry`,
      secret: "bench-cluster-secret-0123456789",
      prefix: `${prefix}cluster:`,
    }),
  });
  const app = express();
  app.use("/registry", actorMiddleware(registry));
  // The lower bound of a hop: a plain route, and the same reached through a bare http-proxy-middleware
  // hop from the other node (keep-alive, no plugins), which the runner names in x-bench-target.
  app.get("/plain", (_req, res) => {
    res.json(payload);
  });
  app.use(
    "/proxied",
    createProxyMiddleware({
      router: (req) => `http://127.0.0.1:${req.headers["x-bench-target"]}/plain`,
      // As the library's: idle connections close before the owner's keep-alive would end them.
      agent: new Agent({ keepAlive: true, timeout: 30_000 }),
      ejectPlugins: true,
      plugins: [(proxy) => proxy.on("error", (_err, _req, res) => res.destroy())],
    }),
  );
  server.on("request", app);
  // Ready once Redis has confirmed this node's heartbeat, as a load balancer's health check would wait.
  while ((await fetch(`http://127.0.0.1:${port}/registry/health`).catch(() => undefined))?.status !== 200) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  void sendToRunner({ type: "ready", port });
});
// Shut down, so the leases go at once and a later run's keys are not held.
process.on("disconnect", () => void (registry?.shutdown() ?? Promise.resolve()).finally(() => process.exit(0)));
process.on("message", (m) => {
  if (m !== "cpu") return;
  const { user, system } = process.cpuUsage();
  void sendToRunner({ type: "cpu", micros: user + system });
});
