import { execFile, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import compression from "compression";
import express, { type Request } from "express";
import expressWs from "express-ws";
import { Registry as MetricsRegistry } from "prom-client";
import { actorMiddleware, fileStore, forwardToActor, setup, type CorsOptions } from "express-actors";
import { redisCluster } from "express-actors/cluster/redis";
import { postgresStore } from "express-actors/stores/postgres";
import { cart, chat, counter, feed } from "./actors";

const ROOT = path.resolve(__dirname, "..");
const PUBLIC_DIR = path.join(__dirname, "public");
const BUNDLE = path.join(ROOT, "dist", "browser", "client.js");

export interface DemoOptions {
  /** Default: $PORT or 3000; 0 picks a free port. */
  port?: number;
  /** Interface to listen on; default: all of them. */
  host?: string;
  /** fileStore directory; default `.demo-data` (git-ignored). */
  storeDir?: string;
  /**
   * PostgreSQL instead of files: a connection string. Default: $DATABASE_URL when $DEMO_STORE is
   * `postgres` (postgres://postgres@127.0.0.1:5432/test if unset), else files.
   */
  postgres?: string;
  /** CORS for pages on other origins; `false` turns it off. Default: from $DEMO_CORS_ORIGIN (see corsFromEnv). */
  cors?: CorsOptions | false;
  /** How long open streams (SSE) may run on after close() starts, in ms. Default 500. */
  closeGraceMs?: number;
  /** One node of several over Redis (docs/clusters.md); needs `postgres`. Default: from $DEMO_CLUSTER_REDIS (see clusterFromEnv). */
  cluster?: DemoCluster | false;
}

export interface DemoCluster {
  redis: string;
  /** The same on every node. */
  secret: string;
  /** This node's mount as the other nodes reach it, e.g. http://127.0.0.1:3001/registry. */
  advertise: string;
  /** Redis key prefix of the cluster's leases. */
  prefix?: string;
}

export function createRegistry(
  storeDir: string,
  postgres = postgresFromEnv(),
  cluster: DemoCluster | false = false,
  metrics?: MetricsRegistry,
) {
  if (cluster && !postgres) throw new Error("a demo cluster shares one PostgreSQL store: set DEMO_STORE=postgres (and DATABASE_URL)");
  // Either way, counts, carts and chat history survive a restart.
  const store = postgres ? postgresStore({ connectionString: postgres, table: "demo_actors" }) : fileStore({ dir: storeDir });
  if (!cluster) return setup({ use: { counter, feed, cart, chat }, store, metrics });
  const { redis, secret, advertise, prefix } = cluster;
  return setup({ use: { counter, feed, cart, chat }, store, metrics, cluster: redisCluster({ url: redis, secret, advertise, prefix }) });
}

/**
 * $DEMO_CLUSTER_REDIS (a redis:// URL) makes this process one node of a cluster, with
 * $DEMO_CLUSTER_SECRET, $DEMO_CLUSTER_PREFIX and $DEMO_ADVERTISE (default http://127.0.0.1:$PORT/registry).
 * `npm run demo:cluster` (demo/cluster.ts) sets them for each node it starts.
 */
export function clusterFromEnv(env = process.env): DemoCluster | false {
  const redis = env.DEMO_CLUSTER_REDIS;
  if (!redis) return false;
  const secret = env.DEMO_CLUSTER_SECRET;
  if (!secret) throw new Error("DEMO_CLUSTER_SECRET is not set: every node needs the same one");
  const advertise = env.DEMO_ADVERTISE ?? (env.PORT ? `http://127.0.0.1:${env.PORT}/registry` : undefined);
  if (!advertise) throw new Error("a cluster node needs PORT (or DEMO_ADVERTISE): the other nodes must know where to reach it");
  return { redis, secret, advertise, prefix: env.DEMO_CLUSTER_PREFIX };
}

function postgresFromEnv(): string | undefined {
  if (process.env.DEMO_STORE !== "postgres") return undefined;
  return process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
}

/** The demo's registry type, for `createClient<DemoRegistry>(…)` (demo/chat-cli.ts). */
export type DemoRegistry = ReturnType<typeof createRegistry>;

/**
 * $DEMO_CORS_ORIGIN: unset or `*` → any origin (every demo actor is public and no credentials are
 * allowed, so this only saves you a setting while trying things); a comma-separated list → only
 * those origins; `off` → no CORS.
 */
export function corsFromEnv(value = process.env.DEMO_CORS_ORIGIN): CorsOptions | false {
  const text = value?.trim();
  if (text === undefined || text === "*") return { origin: true };
  if (text === "" || text === "off") return false;
  return { origin: text.split(",").map((origin) => origin.trim()).filter(Boolean) };
}

/**
 * The page loads dist/browser/client.js (what `npm run build`, and so `npm ci`, makes). Rebuilt
 * here with scripts/build-browser.mjs when it is missing or older than the library's sources.
 */
export function ensureBrowserBundle(): void {
  if (existsSync(BUNDLE) && statSync(BUNDLE).mtimeMs >= newestMtime(path.join(ROOT, "lib"))) return;
  console.log("building dist/browser/client.js …");
  const result = spawnSync(process.execPath, [path.join(ROOT, "scripts", "build-browser.mjs")], { cwd: ROOT, stdio: "inherit" });
  if (result.status !== 0) throw new Error("building the browser bundle failed; try `npm run build`");
}

/**
 * The RivetKit panel's bundle of `rivetkit/client` (scripts/build-rivetkit-browser.mjs), built on the
 * first request and kept under node_modules/.cache, named after the installed rivetkit version.
 */
function rivetkitBundle(): Promise<string> {
  const script = path.join(ROOT, "scripts", "build-rivetkit-browser.mjs");
  const { version } = JSON.parse(readFileSync(path.join(ROOT, "node_modules", "rivetkit", "package.json"), "utf8")) as { version: string };
  const bundle = path.join(ROOT, "node_modules", ".cache", "express-actors-demo", `rivetkit-client-${version}.js`);
  if (existsSync(bundle) && statSync(bundle).mtimeMs >= statSync(script).mtimeMs) return Promise.resolve(bundle);
  console.log(`building the browser bundle of rivetkit ${version}'s client …`);
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script, bundle], { cwd: ROOT }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`building the rivetkit client for the browser failed: ${stderr || err.message}`));
      else resolve(bundle);
    });
  });
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(full) : statSync(full).mtimeMs);
  }
  return newest;
}

/** The demo app on an http.Server that is not listening yet (express-ws needs the server). */
export function createDemoApp(options: DemoOptions = {}) {
  ensureBrowserBundle();
  const metrics = new MetricsRegistry();
  const cluster = options.cluster ?? clusterFromEnv();
  const registry = createRegistry(options.storeDir ?? ".demo-data", options.postgres ?? postgresFromEnv(), cluster, metrics);
  const cors = options.cors === undefined ? corsFromEnv() : options.cors;

  const app = express();
  const server = http.createServer(app);
  const ws = expressWs(app, server); // WebSockets: once, before the routes

  // Compression and body parsing in front, as in a typical existing app: SSE still streams per event,
  // and a body express.json() already read is rebuilt for the actor.
  app.use(compression());
  app.use(express.json());

  // The public router: ANY /registry/actors/raw/http/*, GET /registry/actors/raw/websocket/* (upgrade),
  // POST /registry/actors/resolve, GET /registry/health.
  app.use("/registry", actorMiddleware(registry, cors ? { cors } : {}));

  // EventSource cannot send the query header, so the feed gets a route of its own.
  app.get(
    "/feed/:key/events",
    forwardToActor(registry, {
      name: "feed",
      key: (req: Request<{ key: string }>) => [req.params.key],
      path: () => "/events",
    }),
  );

  // A legacy URL scheme, served by the cart actor keyed by :id. Express 5 syntax (Express 4: "/legacy/carts/:id/*").
  // auth: "skip" because this route is the gate: cart has no onAuth, so the public router refuses it (403).
  type CartRequest = Request<{ id: string; rest: string[] }>;
  app.all(
    "/legacy/carts/:id/*rest",
    forwardToActor(registry, {
      name: "cart",
      key: (req: CartRequest) => [req.params.id],
      path: (req: CartRequest) => restPath(req.params.rest, req.url),
      auth: "skip",
    }),
  );

  // Prometheus scrapes the actors' figures here (docs/observability.md lists them).
  app.get("/metrics", async (_req, res) => {
    res.set("content-type", metrics.contentType).send(await metrics.metrics());
  });

  // The web page (demo/public) and the browser bundle of express-actors/client it imports.
  const noCache = { headers: { "cache-control": "no-cache" } };
  app.get("/client.js", (_req, res) => res.sendFile(BUNDLE, noCache));
  app.get("/client.js.map", (_req, res) => res.sendFile(BUNDLE + ".map", noCache));
  // RivetKit's own client for the page's RivetKit panel; a failed build is retried on the next request.
  let rivetkitBuild: Promise<string> | undefined;
  app.get("/rivetkit-client.js", async (_req, res, next) => {
    try {
      res.sendFile(await (rivetkitBuild ??= rivetkitBundle()), { ...noCache, dotfiles: "allow" }); // under node_modules/.cache
    } catch (err) {
      rivetkitBuild = undefined;
      next(err);
    }
  });
  app.use(express.static(PUBLIC_DIR, { cacheControl: false, setHeaders: (res) => res.setHeader("cache-control", "no-cache") }));

  return { app, server, registry, cors, cluster, wss: ws.getWss() };
}

export interface Demo {
  server: http.Server;
  registry: DemoRegistry;
  /** e.g. http://localhost:3000 */
  url: string;
  port: number;
  cors: CorsOptions | false;
  cluster: DemoCluster | false;
  /** Stops taking connections, shuts the registry down (every state saved) and closes every connection. */
  close(): Promise<void>;
}

export async function startDemo(options: DemoOptions = {}): Promise<Demo> {
  const { server, registry, cors, cluster, wss } = createDemoApp(options);
  const wanted = options.port ?? Number(process.env.PORT ?? 3000);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(wanted, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = !options.host || options.host === "0.0.0.0" || options.host === "::" ? "localhost" : options.host;

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // An SSE stream never ends by itself; drop those connections so shutdown does not wait on them.
      const timer = setTimeout(() => server.closeAllConnections(), options.closeGraceMs ?? 500);
      try {
        await registry.shutdown(); // closes the actors' sockets (1001; 1012 in a cluster), saves every state
      } finally {
        clearTimeout(timer);
        server.closeAllConnections();
        for (const socket of wss.clients) socket.terminate(); // a peer that never answered the close
      }
      await closed;
    })());

  return { server, registry, url: `http://${host}:${port}`, port, cors, cluster, close };
}

/** Express 5 hands `*rest` over as decoded segments: re-encode them and keep the query string. */
function restPath(segments: string[], url: string): string {
  const search = url.indexOf("?");
  return "/" + segments.map(encodeURIComponent).join("/") + (search === -1 ? "" : url.slice(search));
}

function describeCors(cors: CorsOptions | false): string {
  if (!cors) return "off (DEMO_CORS_ORIGIN=off)";
  if (cors.origin === true) return "any origin, without credentials (DEMO_CORS_ORIGIN=https://a.example,https://b.example to restrict, =off to disable)";
  return `only ${[cors.origin].flat().join(", ")}`;
}

async function main() {
  const demo = await startDemo();
  const base = demo.url;
  if (demo.cluster) {
    // demo/cluster.ts prints the overview once for all its nodes.
    console.log(`cluster node on ${base} (pid ${process.pid}), advertised as ${demo.cluster.advertise}`);
  } else printOverview(demo);
  stopOnSignals(demo);
}

function printOverview(demo: Demo) {
  const base = demo.url;
  const query = (name: string) => `'X-RivetKit-Actor-Query: {"getOrCreateForKey":{"name":"${name}","key":["demo"]}}'`;
  console.log(`express-actors demo on ${base}

Open ${base}/ in a browser: counter (handle.fetch), chat (handle.websocket), live feed (EventSource)
and raw router calls, all through the browser bundle served at ${base}/client.js, and the counter
through RivetKit's own client (rivetkit/client, bundled at ${base}/rivetkit-client.js).
CORS for pages on other origins: ${describeCors(demo.cors)}
State: ${postgresFromEnv() ? "PostgreSQL, table demo_actors (DEMO_STORE=postgres, DATABASE_URL)" : "files in .demo-data/ (DEMO_STORE=postgres for PostgreSQL)"}

# chat from two terminals (the same room the page joins; Ctrl-D or Ctrl-C to leave)
npm run chat -- lobby ann
npm run chat -- lobby bob

# counter through the router (the query header picks the actor)
curl -X POST ${base}/registry/actors/raw/http/increment -H ${query("counter")}
curl ${base}/registry/actors/raw/http/count -H ${query("counter")}

# Server-Sent Events, one per second, through compression() (Ctrl-C to stop)
curl -N --compressed ${base}/registry/actors/raw/http/events -H ${query("feed")}
curl -N ${base}/feed/demo/events        # the same, through a forwarded route (what the page's EventSource uses)

# a legacy Express route forwarded to the cart actor "42"
curl -X POST ${base}/legacy/carts/42/items -H 'content-type: application/json' -d '{"item":"apple"}'
curl ${base}/legacy/carts/42/items

# the cart has no onAuth, so the public router refuses it: 403 {"code":"forbidden",...}
curl -i ${base}/registry/actors/raw/http/items -H ${query("cart")}

curl ${base}/registry/health
`);
}

function stopOnSignals(demo: Demo) {
  // Stop taking connections, let the registry finish its work and save every state, then exit.
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: shutting down`);
    await demo.close();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
