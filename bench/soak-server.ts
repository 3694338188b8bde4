// The process the soak measures: an Express app with the router over a fileStore, in a child of
// bench/soak.ts, started with --expose-gc. Usage: soak-server.ts '<ServerConfig JSON>'.
// No uncaughtException / unhandledRejection listeners on purpose: anything unhandled kills the
// process, and the runner reports that the server did not survive.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import expressWs from "express-ws";
import { actor, actorMiddleware, fileStore, setup } from "express-actors";
import { serveCalls } from "./soak-ipc";

export interface ServerConfig {
  dir: string;
  /** sleepTimeout of the counter actors, in ms. */
  sleepTimeout: number;
  headersTimeout: number;
  requestTimeout: number;
  connectionsCheckingInterval: number;
  /** Open no port: only read the store back (the check for lost writes). */
  verify?: boolean;
}

const config = JSON.parse(process.argv[2]) as ServerConfig;

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("soak-server.ts needs node --expose-gc");

const stats = {
  /** Sockets on the `hold` actors (the 10,000-socket phase). */
  holdOpen: 0,
  holdOpened: 0,
  holdClosedClean: 0,
  holdClosedOther: 0,
  counterAwake: 0,
  wakes: 0,
  sleeps: 0,
  sseOpen: 0,
  sseOpened: 0,
  sessionsOpen: 0,
  uploadsStarted: 0,
  uploadsAborted: 0,
  /** Lines the library logged at warn or error level. */
  libraryWarnings: 0,
  libraryErrors: 0,
  firstLibraryLines: [] as string[],
};
export type ServerStats = typeof stats;

for (const level of ["warn", "error"] as const) {
  const original = console[level].bind(console);
  console[level] = (...args: unknown[]) => {
    if (typeof args[0] === "string" && args[0].startsWith("[express-actors")) {
      if (level === "warn") stats.libraryWarnings++;
      else stats.libraryErrors++;
      if (stats.firstLibraryLines.length < 5) stats.firstLibraryLines.push(args.map(String).join(" ").slice(0, 500));
    }
    original(...args);
  };
}

const encoder = new TextEncoder();

/** An SSE stream of the actor's count, a tick every 50 ms, until the client goes away. */
function events(read: () => number): Response {
  let timer: NodeJS.Timeout;
  stats.sseOpen++;
  stats.sseOpened++;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const tick = () => controller.enqueue(encoder.encode(`data: ${read()}\n\n`));
      tick();
      timer = setInterval(tick, 50);
    },
    cancel() {
      clearInterval(timer);
      stats.sseOpen--;
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } });
}

const counter = actor({
  state: { count: 0 },
  onAuth: () => null,
  onStart: () => {
    stats.counterAwake++;
    stats.wakes++;
  },
  onStop: () => {
    stats.counterAwake--;
    stats.sleeps++;
  },
  onFetch: async (c, request) => {
    switch (new URL(request.url).pathname) {
      case "/inc":
        // Saved by the library after this returns and before the reply is sent (SPEC §6).
        return Response.json({ count: ++c.state.count });
      case "/count":
        return Response.json({ count: c.state.count });
      case "/events":
        return events(() => c.state.count);
      case "/upload":
        stats.uploadsStarted++;
        try {
          return new Response(`${(await request.arrayBuffer()).byteLength}`);
        } catch {
          // The server cut a body trickled past requestTimeout: nobody is left to answer.
          stats.uploadsAborted++;
          return new Response(null, { status: 499 });
        }
      default:
        return new Response("not found", { status: 404 });
    }
  },
  onWebSocket: (c, websocket) => {
    stats.sessionsOpen++;
    websocket.addEventListener("close", () => stats.sessionsOpen--);
    websocket.addEventListener("message", async (event) => {
      if (event.data !== "inc") return;
      const count = ++c.state.count;
      // Acknowledged only once durable, like an HTTP write.
      await c.saveState({ immediate: true });
      websocket.send(String(count));
    });
  },
  options: { sleepTimeout: config.sleepTimeout },
});

const hold = actor({
  onAuth: () => null,
  onWebSocket: (_c, websocket) => {
    stats.holdOpen++;
    stats.holdOpened++;
    websocket.addEventListener("message", (event) => {
      if (event.data === "ping") websocket.send("pong");
    });
    websocket.addEventListener("close", (event) => {
      stats.holdOpen--;
      if (event.code === 1000 && event.wasClean) stats.holdClosedClean++;
      else stats.holdClosedOther++;
    });
    websocket.send("ready");
  },
});

const registry = setup({ use: { counter, hold }, store: fileStore({ dir: config.dir }) });

/** Heap and RSS after several GC passes with turns in between, so that finalizers settle too. */
async function settledMemory() {
  for (let i = 0; i < 4; i++) {
    gc!();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const { heapUsed, rss, external, arrayBuffers } = process.memoryUsage();
  return { heapUsed, rss, external, arrayBuffers };
}
export type Memory = Awaited<ReturnType<typeof settledMemory>>;

/** Resolves once no counter actor is awake and no stream or socket is open, or after `timeoutMs`. */
async function quiet(timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  const busy = () => stats.counterAwake + stats.sseOpen + stats.sessionsOpen + stats.holdOpen > 0;
  while (busy() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  return { quiet: !busy(), stats: { ...stats } };
}

/** The count each key's actor holds, read through a new registry over the same files. */
async function counts(keys: string[]) {
  const client = registry.createServerClient();
  const result: Record<string, number> = {};
  for (let i = 0; i < keys.length; i += 100) {
    await Promise.all(
      keys.slice(i, i + 100).map(async (key) => {
        const response = await client.counter.get([key]).fetch("/count");
        if (response.status === 404) result[key] = 0;
        else if (response.ok) result[key] = ((await response.json()) as { count: number }).count;
        else throw new Error(`reading ${key} answered HTTP ${response.status}: ${await response.text()}`);
      }),
    );
  }
  return result;
}

const api = {
  memory: () => settledMemory(),
  stats: async () => ({ ...stats }),
  quiet: (timeoutMs: number) => quiet(timeoutMs),
  counts: (keys: string[]) => counts(keys),
  shutdown: () => registry.shutdown(),
};
export type ServerApi = typeof api;

if (config.verify) {
  serveCalls(api);
} else {
  const app = express();
  const server = createServer(
    {
      headersTimeout: config.headersTimeout,
      requestTimeout: config.requestTimeout,
      connectionsCheckingInterval: config.connectionsCheckingInterval,
    },
    app,
  );
  expressWs(app, server);
  app.use("/registry", actorMiddleware(registry));
  server.listen(0, "127.0.0.1", () => serveCalls(api, { port: (server.address() as AddressInfo).port }));
}
