import { MeterProvider, MetricReader, type DataPoint, type Histogram } from "@opentelemetry/sdk-metrics";
import pino from "pino";
import { Registry as PromRegistry } from "prom-client";
import request from "supertest";
import { actor, setup, UserError } from "express-actors";
import { actorQuery, RAW, waitFor } from "./helpers/actor-harness";
import { fencedError, FlakyStore, parseMetrics, sampleValue, type Sample } from "./helpers/metrics-text";
import { expressVersions } from "./helpers/servers";
import { connectActor, getOrCreate, startWsApp, within, type WsApp } from "./helpers/ws-harness";

// Issue 15, metrics: setup({ metrics }) with a prom-client Registry; /metrics is scraped after a
// scripted sequence of real requests and WebSockets and the figures are exact.

const counting = {
  state: { n: 0 },
  onAuth: () => null,
  onFetch: (c: any, req: Request) => {
    const path = new URL(req.url).pathname;
    if (path === "/inc") {
      c.state.n++;
      return Response.json(c.state);
    }
    if (path === "/missing") return new Response("no such thing", { status: 404 });
    if (path === "/user-error") throw new UserError("not like that");
    throw new Error("boom");
  },
  options: { stateSaveInterval: 60_000 },
};
const counter = actor(counting);
const fenced = actor(counting);
const sleepy = actor({ state: {}, onAuth: () => null, onFetch: () => new Response("zz"), options: { sleepTimeout: 50 } });
const room = actor({
  onAuth: () => null,
  onWebSocket: (_c, ws, { request }) => {
    const path = new URL(request.url).pathname;
    if (path === "/throw") throw new Error("refused");
    if (path === "/app-close") ws.close(4001, "bye");
    ws.addEventListener("message", (e) => ws.send(e.data));
  },
});

describe.each(expressVersions)("prom-client metrics on $label", ({ express }) => {
  const prom = new PromRegistry();
  const store = new FlakyStore();
  // The failures this provokes are logged; a silent pino logger keeps the test output clean.
  const registry = setup({ use: { counter, fenced, sleepy, room }, store, metrics: prom, logger: pino({ level: "silent" }) });
  let app: WsApp;

  beforeAll(async () => {
    app = await startWsApp({
      express,
      registry,
      before: (app) =>
        app.get("/metrics", async (_req: unknown, res: any) => {
          res.set("content-type", prom.contentType).send(await prom.metrics());
        }),
    });
  });
  afterAll(async () => {
    await registry.shutdown();
    await app.close();
  });

  const call = (name: string, key: string, path: string) =>
    request(app.url).post(`${RAW}${path}`).set("X-RivetKit-Actor-Query", actorQuery(name, [key]));
  const scrape = async (): Promise<Sample[]> => {
    const res = await request(app.url).get("/metrics").expect(200);
    expect(res.headers["content-type"]).toContain("text/plain");
    return parseMetrics(res.text);
  };
  const value = async (name: string, labels: Record<string, string> = {}) => sampleValue(await scrape(), name, labels);
  const until = (name: string, labels: Record<string, string>, expected: number) =>
    waitFor(async () => (await value(name, labels)) === expected, `${name} ${JSON.stringify(labels)} = ${expected}`);

  it("counts a scripted sequence exactly", async () => {
    for (let i = 0; i < 3; i++) expect((await call("counter", "a", "/inc")).status).toBe(200);
    expect((await call("counter", "a", "/missing")).status).toBe(404);
    expect((await call("counter", "a", "/user-error")).status).toBe(400);
    expect((await call("counter", "a", "/boom")).status).toBe(500);
    expect((await call("counter", "b", "/inc")).status).toBe(200);

    // A failed save answers 503 and is retried (with the state {"n":4}) shortly after.
    store.failNext("save", new Error("disk full"));
    expect((await call("counter", "a", "/inc")).body.code).toBe("state_save_failed");
    await until("express_actors_state_saves_total", { actor: "counter", result: "ok" }, 5);

    // A fenced save is counted as fenced, not as a store error.
    store.failNext("save", fencedError());
    expect((await call("fenced", "x", "/inc")).status).toBe(503);
    await until("express_actors_state_saves_total", { actor: "fenced", result: "ok" }, 1);

    // A lookup that fails never reaches onFetch: a store error, and no fetch is counted.
    store.failNext("lookupKey", new Error("connection reset"));
    expect((await call("counter", "c", "/inc")).body.code).toBe("internal_error");

    expect((await call("sleepy", "s", "/")).status).toBe(200);
    await until("express_actors_sleeps_total", { actor: "sleepy" }, 1);

    const m = await scrape();
    const v = (name: string, labels: Record<string, string> = {}) => sampleValue(m, name, labels);
    expect(v("express_actors_activations_total", { actor: "counter" })).toBe(2);
    expect(v("express_actors_activations_total", { actor: "sleepy" })).toBe(1);
    expect(v("express_actors_live_actors", { actor: "counter" })).toBe(2);
    expect(v("express_actors_live_actors", { actor: "sleepy" })).toBe(0);
    expect(v("express_actors_live_actors", { actor: "room" })).toBe(0);

    const fetches = "express_actors_fetch_duration_seconds_count";
    expect(v(fetches, { actor: "counter", status_class: "2xx" })).toBe(4);
    expect(v(fetches, { actor: "counter", status_class: "4xx" })).toBe(2);
    expect(v(fetches, { actor: "counter", status_class: "5xx" })).toBe(2);
    expect(v(fetches, { actor: "fenced", status_class: "5xx" })).toBe(1);
    expect(v(fetches, { actor: "sleepy", status_class: "2xx" })).toBe(1);
    expect(v("express_actors_fetch_duration_seconds_bucket", { actor: "counter", status_class: "2xx", le: "+Inf" })).toBe(4);

    expect(v("express_actors_state_saves_total", { actor: "counter", result: "ok" })).toBe(5);
    expect(v("express_actors_state_saves_total", { actor: "counter", result: "error" })).toBe(1);
    expect(v("express_actors_state_saves_total", { actor: "counter", result: "fenced" })).toBeUndefined();
    expect(v("express_actors_state_saves_total", { actor: "fenced", result: "fenced" })).toBe(1);
    // A fenced save means another owner has the actor: it stops here, counted as a lost lease, not a sleep.
    expect(v("express_actors_cluster_lease_losses_total", { actor: "fenced", cause: "fenced" })).toBe(1);
    expect(v("express_actors_sleeps_total", { actor: "fenced" })).toBeUndefined();
    expect(v("express_actors_live_actors", { actor: "fenced" })).toBe(0);
    // {"n":1} … {"n":4} for "a", {"n":1} for "b": seven bytes each.
    expect(v("express_actors_state_save_bytes_sum", { actor: "counter" })).toBe(35);
    expect(v("express_actors_state_save_bytes_count", { actor: "counter" })).toBe(5);
    expect(v("express_actors_state_save_duration_seconds_count", { actor: "counter" })).toBe(5);

    expect(v("express_actors_store_errors_total", { operation: "save" })).toBe(1);
    expect(v("express_actors_store_errors_total", { operation: "lookup" })).toBe(1);
    expect(v("express_actors_store_errors_total", { operation: "load" })).toBeUndefined();

    // Bounded labels only: no key and no id anywhere.
    const labelValues = m.flatMap((s) => Object.values(s.labels));
    for (const secretish of ["a", "b", "c", "s", "x"]) expect(labelValues).not.toContain(secretish);
    expect(labelValues.some((l) => /^[0-9a-f-]{36}$/.test(l))).toBe(false);
  });

  it("counts WebSockets: open now, handed to onWebSocket, and lifetimes by close code", async () => {
    const first = connectActor(app, getOrCreate("room", ["r"]));
    const second = connectActor(app, getOrCreate("room", ["r"]));
    await within(Promise.all([first.opened, second.opened]), "two sockets to open");
    second.send("echo");
    await second.received(1);
    expect(await value("express_actors_websockets_open", { actor: "room" })).toBe(2);

    first.ws.close(1000, "done");
    await until("express_actors_websockets_open", { actor: "room" }, 1);

    const thrown = connectActor(app, getOrCreate("room", ["r"]), { path: "/throw" });
    expect((await within(thrown.closed, "the throwing handler's close")).code).toBe(1011);
    const appClosed = connectActor(app, getOrCreate("room", ["r"]), { path: "/app-close" });
    expect((await within(appClosed.closed, "the app close")).code).toBe(4001);
    await until("express_actors_websocket_duration_seconds_count", { actor: "room", close_code: "4xxx" }, 1);

    const m = await scrape();
    const v = (name: string, labels: Record<string, string>) => sampleValue(m, name, labels);
    expect(v("express_actors_websocket_connections_total", { actor: "room" })).toBe(4);
    expect(v("express_actors_websockets_open", { actor: "room" })).toBe(1);
    expect(v("express_actors_websocket_duration_seconds_count", { actor: "room", close_code: "1000" })).toBe(1);
    expect(v("express_actors_websocket_duration_seconds_count", { actor: "room", close_code: "1011" })).toBe(1);
    expect(v("express_actors_websocket_duration_seconds_count", { actor: "room", close_code: "4xxx" })).toBe(1);
    expect(v("express_actors_live_actors", { actor: "room" })).toBe(1);
    expect(v("express_actors_activations_total", { actor: "room" })).toBe(1);
    second.ws.close();
    await until("express_actors_websockets_open", { actor: "room" }, 0);
  });
});

/** Reads an OpenTelemetry MeterProvider on demand, as an exporter would. */
class TestReader extends MetricReader {
  protected async onShutdown() {}
  protected async onForceFlush() {}
}

describe("OpenTelemetry metrics", () => {
  it("reports the same figures through a Meter", async () => {
    const reader = new TestReader();
    const provider = new MeterProvider({ readers: [reader] });
    const registry = setup({ use: { counter, room }, metrics: provider.getMeter("express-actors"), logger: pino({ level: "silent" }) });
    const app = await startWsApp({ express: expressVersions[0].express, registry });
    try {
      const call = (path: string) => request(app.url).post(`${RAW}${path}`).set("X-RivetKit-Actor-Query", actorQuery("counter", ["o"]));
      expect((await call("/inc")).status).toBe(200);
      expect((await call("/inc")).status).toBe(200);
      expect((await call("/boom")).status).toBe(500);
      const socket = connectActor(app, getOrCreate("room", ["o"]));
      await within(socket.opened, "the socket to open");

      const points = async (name: string) => {
        const { resourceMetrics } = await reader.collect();
        const metric = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
        return (metric?.dataPoints ?? []) as DataPoint<number | Histogram>[];
      };
      const point = async (name: string, attributes: Record<string, string>) =>
        (await points(name)).find((p) => Object.entries(attributes).every(([k, v]) => p.attributes[k] === v))?.value;

      expect(await point("express_actors_activations_total", { actor: "counter" })).toBe(1);
      expect(await point("express_actors_live_actors", { actor: "counter" })).toBe(1);
      expect(((await point("express_actors_fetch_duration_seconds", { actor: "counter", status_class: "2xx" })) as Histogram).count).toBe(2);
      expect(((await point("express_actors_fetch_duration_seconds", { actor: "counter", status_class: "5xx" })) as Histogram).count).toBe(1);
      expect(await point("express_actors_state_saves_total", { actor: "counter", result: "ok" })).toBe(2);
      expect(await point("express_actors_websockets_open", { actor: "room" })).toBe(1);
      socket.ws.close(1000);
      await waitFor(async () => (await point("express_actors_websockets_open", { actor: "room" })) === 0, "the socket to be counted closed");
      expect(((await point("express_actors_websocket_duration_seconds", { actor: "room", close_code: "1000" })) as Histogram).count).toBe(1);
    } finally {
      await registry.shutdown();
      await app.close();
      await provider.shutdown();
    }
  });
});

describe("the demo", () => {
  it("serves the actors' metrics at /metrics", async () => {
    const { startDemo } = await import("../demo/server");
    const { tempDir } = await import("./helpers/actor-harness");
    const dir = await tempDir();
    const demo = await startDemo({ port: 0, host: "127.0.0.1", closeGraceMs: 100, cors: false, storeDir: dir.dir });
    try {
      const query = actorQuery("counter", ["metrics"]);
      await request(demo.url).post(`${RAW}/increment`).set("X-RivetKit-Actor-Query", query).expect(200);
      await request(demo.url).get(`${RAW}/count`).set("X-RivetKit-Actor-Query", query).expect(200);
      const res = await request(demo.url).get("/metrics").expect(200);
      const m = parseMetrics(res.text);
      expect(sampleValue(m, "express_actors_fetch_duration_seconds_count", { actor: "counter", status_class: "2xx" })).toBe(2);
      expect(sampleValue(m, "express_actors_state_saves_total", { actor: "counter", result: "ok" })).toBe(1);
      expect(sampleValue(m, "express_actors_live_actors", { actor: "chat" })).toBe(0);
    } finally {
      await demo.close();
      await dir.cleanup();
    }
  });
});
