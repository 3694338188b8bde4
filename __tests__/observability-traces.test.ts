import { context, propagation, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import pino from "pino";
import request from "supertest";
import { actor, setup } from "express-actors";
import { actorQuery, RAW, waitFor } from "./helpers/actor-harness";
import { FlakyStore } from "./helpers/metrics-text";
import { expressVersions } from "./helpers/servers";
import { getOrCreate, startWsApp, within, WsClient, actorProtocols, type WsApp } from "./helpers/ws-harness";

// Issue 15, traces: with tracing on, each actor request gets a span (actor.fetch, actor.websocket,
// actor.save) under the span of the incoming request, and the handler runs inside it.

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const contextManager = new AsyncLocalStorageContextManager().enable();

beforeAll(() => {
  trace.setGlobalTracerProvider(provider);
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
});
afterAll(async () => {
  await provider.shutdown();
  trace.disable();
  context.disable();
  propagation.disable();
});
beforeEach(() => exporter.reset());

const app_tracer = () => trace.getTracer("the-app");

const counter = actor({
  state: { n: 0 },
  onAuth: () => null,
  onFetch: (c, req) => {
    // A span the handler starts is a child of actor.fetch.
    app_tracer().startActiveSpan("inside onFetch", (span) => span.end());
    if (new URL(req.url).pathname === "/boom") throw new Error("boom");
    c.state.n++;
    return Response.json(c.state);
  },
  options: { stateSaveInterval: 60_000 },
});
const room = actor({
  onAuth: () => null,
  onWebSocket: (_c, ws) => {
    app_tracer().startActiveSpan("inside onWebSocket", (span) => span.end());
    ws.addEventListener("message", (e) => ws.send(e.data));
  },
});

const spans = (name: string) => exporter.getFinishedSpans().filter((s) => s.name === name);
const one = (name: string): ReadableSpan => {
  const found = spans(name);
  if (found.length !== 1) throw new Error(`expected one "${name}" span, found ${found.length}`);
  return found[0];
};
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
const sameTrace = (...all: ReadableSpan[]) => new Set(all.map((s) => s.spanContext().traceId)).size === 1;

describe.each(expressVersions)("OpenTelemetry spans on $label", ({ express }) => {
  const registry = setup({ use: { counter, room }, tracing: true, logger: pino({ level: "silent" }) });
  let app: WsApp;

  beforeAll(async () => {
    app = await startWsApp({
      express,
      registry,
      // What HTTP instrumentation does: a server span for each request, active while it is handled.
      before: (app) =>
        app.use((req: any, res: any, next: () => void) => {
          if (req.headers["x-no-server-span"]) return next();
          const span = app_tracer().startSpan(`${req.method} incoming`, { kind: SpanKind.SERVER });
          res.on("finish", () => span.end());
          context.with(trace.setSpan(context.active(), span), next);
        }),
    });
  });
  afterAll(async () => {
    await registry.shutdown();
    await app.close();
  });

  const call = (path: string) => request(app.url).post(`${RAW}${path}`).set("X-RivetKit-Actor-Query", actorQuery("counter", ["t"]));

  it("puts actor.fetch under the incoming request's span, the handler's spans and actor.save under it", async () => {
    expect((await call("/inc")).status).toBe(200);
    await waitFor(() => spans("POST incoming").length === 1, "the server span to end");
    const incoming = one("POST incoming");
    const fetch = one("actor.fetch");
    const inside = one("inside onFetch");
    const save = one("actor.save");
    expect(sameTrace(incoming, fetch, inside, save)).toBe(true);
    expect(parentOf(fetch)).toBe(incoming.spanContext().spanId);
    expect(parentOf(inside)).toBe(fetch.spanContext().spanId);
    expect(parentOf(save)).toBe(fetch.spanContext().spanId);
    const id = await registry.createServerClient().counter.get(["t"]).resolve();
    expect(fetch.attributes).toEqual({
      "actor.name": "counter",
      "actor.id": id,
      "http.request.method": "POST",
      "http.response.status_code": 200,
    });
    expect(fetch.status.code).toBe(SpanStatusCode.UNSET);
    expect(save.attributes).toEqual({ "actor.name": "counter", "actor.id": id });
  });

  it("marks a failed onFetch as an error", async () => {
    expect((await call("/boom")).status).toBe(500);
    const fetch = one("actor.fetch");
    expect(fetch.attributes["http.response.status_code"]).toBe(500);
    expect(fetch.status.code).toBe(SpanStatusCode.ERROR);
  });

  it("continues the caller's trace from traceparent when no server span is active", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const parentId = "00f067aa0ba902b7";
    const res = await call("/inc").set("x-no-server-span", "1").set("traceparent", `00-${traceId}-${parentId}-01`);
    expect(res.status).toBe(200);
    const fetch = one("actor.fetch");
    expect(fetch.spanContext().traceId).toBe(traceId);
    expect(parentOf(fetch)).toBe(parentId);
  });

  it("spans a WebSocket from onWebSocket to its close, with the close code", async () => {
    const traceId = "0af7651916cd43dd8448eb211c80319c";
    const parentId = "b7ad6b7169203331";
    const client = new WsClient(`${app.wsUrl}/registry/actors/raw/websocket/`, actorProtocols(getOrCreate("room", ["w"])), {
      headers: { traceparent: `00-${traceId}-${parentId}-01`, "x-no-server-span": "1" },
    });
    await within(client.opened, "the socket to open");
    client.send("hello");
    await client.received(1);
    expect(spans("actor.websocket")).toEqual([]);
    client.ws.close(1000);
    await waitFor(() => spans("actor.websocket").length === 1, "the socket span to end");
    const socket = one("actor.websocket");
    expect(socket.spanContext().traceId).toBe(traceId);
    expect(parentOf(socket)).toBe(parentId);
    expect(parentOf(one("inside onWebSocket"))).toBe(socket.spanContext().spanId);
    expect(socket.attributes["websocket.close_code"]).toBe(1000);
    expect(socket.status.code).toBe(SpanStatusCode.UNSET);
  });
});

describe("setup({ tracing: tracer })", () => {
  it("uses the tracer it is given, and the in-process client's caller span as parent", async () => {
    const own = new InMemorySpanExporter();
    const ownProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(own)] });
    const registry = setup({ use: { counter }, tracing: ownProvider.getTracer("mine") });
    try {
      await app_tracer().startActiveSpan("caller", async (caller) => {
        const res = await registry.createServerClient().counter.getOrCreate(["own"]).fetch("/inc", { method: "POST" });
        expect(res.status).toBe(200);
        caller.end();
      });
      const fetch = own.getFinishedSpans().find((s) => s.name === "actor.fetch")!;
      expect(fetch.instrumentationScope.name).toBe("mine");
      expect(parentOf(fetch)).toBe(one("caller").spanContext().spanId);
      expect(spans("actor.fetch")).toEqual([]);
    } finally {
      await registry.shutdown();
      await ownProvider.shutdown();
    }
  });

  it("marks a failed save as an error, under the request that waited for it", async () => {
    const store = new FlakyStore();
    const registry = setup({ use: { counter }, store, tracing: true, logger: pino({ level: "silent" }) });
    try {
      store.failNext("save", new Error("disk full"));
      const res = await registry.createServerClient().counter.getOrCreate(["disk"]).fetch("/inc", { method: "POST" });
      expect(res.status).toBe(503);
      const failed = spans("actor.save").find((s) => s.status.code === SpanStatusCode.ERROR)!;
      expect(failed.events.map((e) => e.attributes?.["exception.message"])).toEqual(["disk full"]);
      const fetch = one("actor.fetch");
      expect(parentOf(failed)).toBe(fetch.spanContext().spanId);
      expect(fetch.attributes["http.response.status_code"]).toBe(503);
      expect(fetch.status.code).toBe(SpanStatusCode.ERROR);
    } finally {
      await registry.shutdown();
    }
  });

  it("refuses a tracing option that is not a tracer", () => {
    expect(() => setup({ use: { counter }, tracing: {} as any })).toThrow(/tracing.*Tracer/);
  });
});
