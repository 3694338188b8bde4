import request from "supertest";
import { actor, actorMiddleware, fileStore, forwardToActor, setup } from "express-actors";
import { coreOf } from "../lib/registry/setup";
import { captureErrorLog, delay, tempDir, TestStore, waitFor } from "./helpers/actor-harness";
import { expressVersions } from "./helpers/servers";
import { connectActor, startWsApp, within, WsClient } from "./helpers/ws-harness";
import { expectWireError, QUERY, RAW } from "./helpers/wire";

// Deeply nested data, from a client or built by a handler, never pins an actor: creation input and
// conn params deeper than 64 levels are refused up front with 400 invalid_query, and a state that
// cannot be saved fails its request with 503, is not retried until it changes, and does not keep
// the actor from sleeping or the registry from shutting down.

/** `levels` nested arrays around 0: `nest(2)` is `[[0]]`. */
function nest(levels: number): unknown {
  let value: unknown = 0;
  for (let i = 0; i < levels; i++) value = [value];
  return value;
}

/** The query of the issue: about 4,000 levels of input in an 8 KB header. */
const deepQuery = (key: string, kind = "getOrCreateForKey") =>
  `{"${kind}":{"name":"keeper","key":["${key}"],"input":${"[".repeat(4000)}${"]".repeat(4000)}}}`;

const keeper = actor({
  createState: (_c, input: unknown) => ({ input: input ?? null }),
  onAuth: (_args, params) => ({ params: params ?? null }),
  onFetch: (c, _req, { auth }) => Response.json({ state: c.state, auth }),
  onWebSocket: (c, ws) => ws.send(JSON.stringify(c.state)),
});

describe.each(expressVersions)("input and conn params on $label", ({ express }) => {
  const registry = setup({ use: { keeper } });
  const app = express();
  app.use("/fwd/:room", express.json(), forwardToActor(registry, { name: "keeper", key: (req) => [req.params.room], input: (req) => req.body }));
  app.use("/registry", actorMiddleware(registry));
  const client = registry.createServerClient();
  afterAll(() => registry.shutdown());

  it("refuses the issue's 4,000-level input with 400 invalid_query and creates nothing", async () => {
    expect(deepQuery("a").length).toBeLessThan(8200);
    for (const kind of ["getOrCreateForKey", "create"]) {
      const res = await request(app).get(RAW + "/").set(QUERY, deepQuery("a", kind));
      expectWireError(res, 400, "invalid_query");
      expect(res.body.message).toContain("64 levels");
    }
    expectWireError(await request(app).get(RAW + "/").set(QUERY, JSON.stringify({ getForKey: { name: "keeper", key: ["a"] } })), 404, "actor_not_found");
    const fresh = await request(app).get(RAW + "/").set(QUERY, JSON.stringify({ getOrCreateForKey: { name: "keeper", key: ["a"] } }));
    expect(fresh.body).toEqual({ state: { input: null }, auth: { params: null } });
  });

  it("accepts input and conn params 64 levels deep, and refuses 65", async () => {
    const query = (levels: number) => JSON.stringify({ getOrCreateForKey: { name: "keeper", key: [`d${levels}`], input: nest(levels) } });
    const ok = await request(app).get(RAW + "/").set(QUERY, query(64)).set("X-RivetKit-Conn-Params", JSON.stringify(nest(64)));
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({ state: { input: nest(64) }, auth: { params: nest(64) } });
    expectWireError(await request(app).get(RAW + "/").set(QUERY, query(65)), 400, "invalid_query");
    const params = await request(app).get(RAW + "/").set(QUERY, query(64)).set("X-RivetKit-Conn-Params", JSON.stringify(nest(65)));
    expectWireError(params, 400, "invalid_query");
    expect(params.body.message).toMatch(/X-RivetKit-Conn-Params.*64 levels/);
  });

  it("refuses deep input from a forwarded route's input(req) and from the server client", async () => {
    const res = await request(app).post("/fwd/r1").set("content-type", "application/json").send(JSON.stringify(nest(4000)));
    expectWireError(res, 400, "invalid_query");
    const viaClient = await client.keeper.getOrCreate(["c"], { input: nest(4000) }).fetch("/");
    expect(viaClient.status).toBe(400);
    expect(((await viaClient.json()) as { code: string }).code).toBe("invalid_query");
    await expect(client.keeper.create(["c"], { input: nest(65) })).rejects.toMatchObject({ code: "invalid_query" });
  });

  it("rebuilds or refuses a body a JSON parser read, never a 500", async () => {
    const parsed = express();
    parsed.use(express.json({ limit: "1mb" }));
    parsed.use("/registry", actorMiddleware(registry));
    const query = JSON.stringify({ getOrCreateForKey: { name: "keeper", key: ["body"] } });
    const send = (levels: number) =>
      request(parsed).post(RAW + "/").set(QUERY, query).set("content-type", "application/json").send("[".repeat(levels) + "]".repeat(levels));
    expect((await send(500)).status).toBe(200);
    expectWireError(await send(20_000), 400, "invalid_request");
  });
});

describe.each(expressVersions)("WebSocket upgrades with deep input on $label", ({ express }) => {
  const registry = setup({ use: { keeper } });
  afterAll(() => registry.shutdown());

  it("closes with 4400 invalid_query", async () => {
    const app = await startWsApp({ express, registry });
    try {
      // Node clients may send the query as a header, where it is smallest.
      const url = `${app.wsUrl}/registry/actors/raw/websocket/`;
      const header = new WsClient(url, ["rivetkit"], { headers: { "X-RivetKit-Actor-Query": deepQuery("ws") } });
      const entry = connectActor(app, { getOrCreateForKey: { name: "keeper", key: ["ws"], input: nest(65) } });
      const params = connectActor(app, { getOrCreateForKey: { name: "keeper", key: ["ws"] } }, { params: nest(65) });
      for (const socket of [header, entry, params]) {
        expect(await within(socket.closed, "the refusal")).toEqual({ code: 4400, reason: "invalid_query" });
      }
      const ok = connectActor(app, { getOrCreateForKey: { name: "keeper", key: ["ws"], input: nest(64) } });
      expect(JSON.parse((await ok.received(1))[0].text)).toEqual({ input: nest(64) });
      ok.ws.close();
    } finally {
      await app.close();
    }
  });
});

describe("fileStore after a refused deep input", () => {
  it("has stored nothing, so the key works after a restart", async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const first = setup({ use: { keeper }, store: fileStore({ dir }) });
      const app = express5App(first);
      expectWireError(await request(app).get(RAW + "/").set(QUERY, deepQuery("f")), 400, "invalid_query");
      await first.shutdown();

      const second = setup({ use: { keeper }, store: fileStore({ dir }) });
      const res = await request(express5App(second)).get(RAW + "/").set(QUERY, JSON.stringify({ getOrCreateForKey: { name: "keeper", key: ["f"], input: 1 } }));
      expect(res.body.state).toEqual({ input: 1 });
      await second.shutdown();
    } finally {
      await cleanup();
    }
  });
});

function express5App(registry: Parameters<typeof actorMiddleware>[0]) {
  const app = expressVersions[0].express();
  app.use("/registry", actorMiddleware(registry));
  return app;
}

describe("a state nested too deeply to save", () => {
  const events: string[] = [];
  const builder = (sleepTimeout: number) =>
    actor({
      state: { count: 0 } as { count: number; deep?: unknown },
      onStart: () => void events.push("start"),
      onStop: () => void events.push("stop"),
      onFetch: (c, req) => {
        const path = new URL(req.url).pathname;
        if (path === "/deep") c.state.deep = nest(20_000);
        if (path === "/repair") delete c.state.deep;
        c.state.count++;
        return Response.json({ count: c.state.count });
      },
      options: { sleepTimeout, stateSaveInterval: 50 },
    });

  let log: ReturnType<typeof captureErrorLog>;
  beforeEach(() => {
    log = captureErrorLog();
    events.length = 0;
  });
  afterEach(() => log.restore());

  const failures = () => log.lines.filter((l) => l.includes("saving state failed"));

  it("fails its request with 503 naming the path, is not retried until it changes, and can be repaired", async () => {
    const store = new TestStore();
    const registry = setup({ use: { builder: builder(60_000) }, store });
    try {
      const handle = registry.createServerClient().builder.getOrCreate(["repair"]);
      expect(await (await handle.fetch("/")).json()).toEqual({ count: 1 });
      const res = await handle.fetch("/deep");
      expect(res.status).toBe(503);
      expect(((await res.json()) as { code: string }).code).toBe("state_save_failed");
      expect(failures()).toHaveLength(1);
      expect(failures()[0]).toMatch(/State is not JSON data: state\.deep\[0\]\[0\].*….* is nested deeper than 1000 levels/);
      expect(log.lines.join("\n")).not.toMatch(/call stack/i);

      // Nothing changed, so nothing is tried again: no retry timer spins on a state that cannot be saved.
      await delay(400);
      expect(failures()).toHaveLength(1);
      expect(await store.stored(await handle.resolve())).toEqual({ count: 1 });

      expect(await (await handle.fetch("/repair")).json()).toEqual({ count: 3 });
      expect(await store.stored(await handle.resolve())).toEqual({ count: 3 });
    } finally {
      await registry.shutdown();
    }
  });

  it("still sleeps, keeping the last good state in the store", async () => {
    const store = new TestStore();
    const registry = setup({ use: { builder: builder(200) }, store });
    try {
      const handle = registry.createServerClient().builder.getOrCreate(["sleep"]);
      await (await handle.fetch("/")).text();
      expect((await handle.fetch("/deep")).status).toBe(503);
      await waitFor(() => events.includes("stop"), "the actor to sleep");
      expect(log.lines.some((l) => l.includes("the changes since the last save are lost"))).toBe(true);
      expect(await (await handle.fetch("/")).json()).toEqual({ count: 2 });
      expect(events).toEqual(["start", "stop", "start"]);
    } finally {
      await registry.shutdown();
    }
  });

  it("does not hold up registry.shutdown()", async () => {
    const store = new TestStore();
    const registry = setup({ use: { builder: builder(60_000) }, store });
    const handle = registry.createServerClient().builder.getOrCreate(["shutdown"]);
    const id = await handle.resolve();
    await (await handle.fetch("/")).text();
    expect((await handle.fetch("/deep")).status).toBe(503);
    // A grace period longer than the test's timeout: the shutdown must finish without spending it.
    await coreOf(registry).shutdown(60_000);
    expect(events).toEqual(["start", "stop"]);
    expect(store.closed).toBe(true);
    expect(await store.stored(id)).toEqual({ count: 1 });
  });
});
