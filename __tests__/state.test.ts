import request from "supertest";
import { actor, setup } from "express-actors";
import {
  RAW,
  TestStore,
  actorQuery,
  captureErrorLog,
  delay,
  mountRegistry,
  waitFor,
} from "./helpers/actor-harness";

describe("initial state", () => {
  const initial = { items: [] as string[], nested: { n: 0 } };
  const list = actor({
    state: initial,
    onAuth: () => null,
    onFetch: async (c, req) => {
      if (req.method === "POST") {
        c.state.items.push(await req.text());
        c.state.nested.n++;
      }
      return Response.json(c.state);
    },
  });
  const registry = setup({ use: { list } });
  const app = mountRegistry(registry);
  afterAll(() => registry.shutdown());

  const post = (key: string, text: string) =>
    request(app).post(`${RAW}/`).set("X-RivetKit-Actor-Query", actorQuery("list", [key])).type("text").send(text).expect(200);
  const get = (key: string) => request(app).get(`${RAW}/`).set("X-RivetKit-Actor-Query", actorQuery("list", [key])).expect(200);

  it("gives every actor its own deep copy, leaving the definition untouched", async () => {
    await post("a", "x");
    await post("a", "y");
    expect((await get("b")).body).toEqual({ items: [], nested: { n: 0 } });
    expect((await get("a")).body).toEqual({ items: ["x", "y"], nested: { n: 2 } });
    await post("b", "z");
    expect((await get("a")).body.items).toEqual(["x", "y"]);
    expect(initial).toEqual({ items: [], nested: { n: 0 } });
    expect(list.config.state).toBe(initial);
    expect((await get("fresh")).body).toEqual({ items: [], nested: { n: 0 } });
  });

  it("refuses a definition whose initial state is not JSON, naming the path", () => {
    expect(() => actor({ state: { when: new Date(0) } })).toThrow("state.when is a Date");
    expect(() => actor({ state: { list: [1, () => 2] } })).toThrow("state.list[1] is a function");
  });
});

describe("createState(c, input)", () => {
  const calls: Array<{ name: string; key: string[]; actorId: string; input: unknown }> = [];
  const shared = { items: [] as string[] };
  const seeded = actor({
    createState: (c, input: { start?: number } | undefined) => {
      calls.push({ name: c.name, key: c.key, actorId: c.actorId, input });
      return { count: input?.start ?? 0, shared };
    },
    onAuth: () => null,
    onFetch: (c, req) => {
      if (req.method === "POST") {
        c.state.count++;
        c.state.shared.items.push(c.key[0]);
      }
      return Response.json(c.state);
    },
  });
  const fromInput = actor({
    createState: (_c, input: { list: string[] } | undefined) => ({ list: input?.list ?? [] }),
    onFetch: (c, req) => {
      if (req.method === "POST") c.state.list.push(c.key[0]);
      return Response.json(c.state);
    },
  });
  const registry = setup({ use: { seeded, fromInput } });
  const app = mountRegistry(registry);
  const client = registry.createServerClient();
  afterAll(() => registry.shutdown());
  beforeEach(() => (calls.length = 0));

  it("receives the input of the router's getOrCreateForKey, on creation only", async () => {
    const first = await request(app)
      .post(`${RAW}/`)
      .set("X-RivetKit-Actor-Query", actorQuery("seeded", ["http"], "getOrCreateForKey", { start: 5 }))
      .expect(200);
    expect(first.body.count).toBe(6);
    const again = await request(app)
      .post(`${RAW}/`)
      .set("X-RivetKit-Actor-Query", actorQuery("seeded", ["http"], "getOrCreateForKey", { start: 99 }))
      .expect(200);
    expect(again.body.count).toBe(7);
    expect(calls).toEqual([{ name: "seeded", key: ["http"], actorId: expect.any(String), input: { start: 5 } }]);
  });

  it("receives the input of the router's create query", async () => {
    const res = await request(app)
      .get(`${RAW}/`)
      .set("X-RivetKit-Actor-Query", actorQuery("seeded", ["made"], "create", { start: 40 }))
      .expect(200);
    expect(res.body.count).toBe(40);
  });

  it("receives the input of the server client's getOrCreate and create", async () => {
    const res = await client.seeded.getOrCreate(["srv"], { input: { start: 7 } }).fetch("/");
    expect((await res.json()).count).toBe(7);

    const handle = await client.seeded.create(["srv-created"], { input: { start: 3 } });
    expect((await (await handle.fetch("/")).json()).count).toBe(3);
    expect(calls.map((c) => c.input)).toEqual([{ start: 7 }, { start: 3 }]);
    expect(calls[1]).toMatchObject({ key: ["srv-created"], actorId: await handle.resolve() });
  });

  it("does not let the server client's input object alias the actors' states", async () => {
    const input = { start: 1, list: [] as string[] };
    await (await client.fromInput.getOrCreate(["in-1"], { input }).fetch("/", { method: "POST" })).text();
    const other = await (await client.fromInput.getOrCreate(["in-2"], { input }).fetch("/")).json();
    expect(other.list).toEqual([]);
    expect(input).toEqual({ start: 1, list: [] });
  });

  it("refuses a server client input that is not JSON with 400 invalid_query", async () => {
    const res = await client.seeded.getOrCreate(["big"], { input: { start: BigInt(1) } }).fetch("/");
    expect(res.status).toBe(400);
    expect((await res.json()).code).toBe("invalid_query");
    expect(calls).toEqual([]);
  });

  it("isolates actors even when createState returns a shared object", async () => {
    await (await client.seeded.getOrCreate(["iso-1"]).fetch("/", { method: "POST" })).text();
    const other = await (await client.seeded.getOrCreate(["iso-2"]).fetch("/")).json();
    expect(other.shared.items).toEqual([]);
    expect(shared.items).toEqual([]);
  });
});

describe("createState returning something that is not JSON", () => {
  const dated = actor({
    createState: () => ({ when: new Date(0) }),
    onAuth: () => null,
    onFetch: () => new Response("never"),
  });
  const registry = setup({ use: { dated } });
  const app = mountRegistry(registry);
  afterAll(() => registry.shutdown());

  it("fails the activation with 500 internal_error and logs the path", async () => {
    const log = captureErrorLog();
    try {
      const res = await request(app).get(`${RAW}/`).set("X-RivetKit-Actor-Query", actorQuery("dated", ["d"])).expect(500);
      expect(res.body).toEqual({ code: "internal_error", message: "Internal error" });
      expect(log.lines.join("\n")).toContain("state.when is a Date");
    } finally {
      log.restore();
    }
  });
});

describe("createVars", () => {
  let activations = 0;
  const stops: string[] = [];
  const store = new TestStore();
  const withVars = actor({
    state: { hits: 0 },
    createVars: (c) => ({ activation: ++activations, hitsAtStart: c.state.hits, cache: new Map<string, number>() }),
    onStop: (c) => void stops.push(c.key[0]),
    onAuth: () => null,
    onFetch: (c) => {
      c.state.hits++;
      c.vars.cache.set("seen", c.state.hits);
      return Response.json({ activation: c.vars.activation, hitsAtStart: c.vars.hitsAtStart, hits: c.state.hits });
    },
    options: { sleepTimeout: 40 },
  });
  const registry = setup({ use: { withVars }, store });
  const client = registry.createServerClient();
  afterAll(() => registry.shutdown());

  it("runs on every activation, sees the loaded state, and is never persisted", async () => {
    const handle = client.withVars.getOrCreate(["v"]);
    expect(await (await handle.fetch("/")).json()).toEqual({ activation: 1, hitsAtStart: 0, hits: 1 });
    expect(await (await handle.fetch("/")).json()).toEqual({ activation: 1, hitsAtStart: 0, hits: 2 });
    await waitFor(() => stops.length === 1, "the actor to sleep");
    expect(await (await handle.fetch("/")).json()).toEqual({ activation: 2, hitsAtStart: 2, hits: 3 });
    expect(await store.stored(await handle.resolve())).toEqual({ hits: 3 });
  });
});

describe("onStateChange", () => {
  const calls: number[] = [];
  const watched = actor({
    state: { count: 0, lastSeen: -1 },
    onStateChange: (c, state) => {
      calls.push(state.count);
      // A change made here must not call the hook again.
      c.state.lastSeen = state.count;
    },
    onAuth: () => null,
    onFetch: async (c, req) => {
      const url = new URL(req.url);
      const n = Number(url.searchParams.get("n") ?? "1");
      for (let i = 0; i < n; i++) c.state.count++;
      if (url.pathname === "/two-turns") {
        await delay(1);
        c.state.count++;
      }
      return Response.json(c.state);
    },
  });
  const thrower = actor({
    state: { count: 0 },
    onStateChange: async () => {
      throw new Error("listener broke");
    },
    onFetch: (c) => {
      c.state.count++;
      return Response.json(c.state);
    },
  });
  const store = new TestStore();
  const registry = setup({ use: { watched, thrower }, store });
  const client = registry.createServerClient();
  afterAll(() => registry.shutdown());
  beforeEach(() => (calls.length = 0));

  it("is called once for many changes in one turn, and not for its own changes", async () => {
    const handle = client.watched.getOrCreate(["w"]);
    await (await handle.fetch("/?n=10")).text();
    await delay(20);
    expect(calls).toEqual([10]);
    expect(await store.stored(await handle.resolve())).toEqual({ count: 10, lastSeen: 10 });

    await (await handle.fetch("/?n=3")).text();
    await delay(20);
    expect(calls).toEqual([10, 13]);
  });

  it("is called again for changes made in a later turn", async () => {
    await (await client.watched.getOrCreate(["turns"]).fetch("/two-turns?n=2")).text();
    await delay(20);
    expect(calls).toEqual([2, 3]);
  });

  it("does not call it for a request that changes nothing", async () => {
    const handle = client.watched.getOrCreate(["still"]);
    await (await handle.fetch("/?n=1")).text();
    await delay(20);
    await (await handle.fetch("/?n=0")).text();
    await delay(20);
    expect(calls).toEqual([1]);
  });

  it("logs a hook that rejects and still saves the state", async () => {
    const log = captureErrorLog();
    try {
      const handle = client.thrower.getOrCreate(["t"]);
      const res = await handle.fetch("/");
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ count: 1 });
      await waitFor(() => log.lines.some((l) => l.includes("listener broke")), "the hook's error to be logged");
      expect(await store.stored(await handle.resolve())).toEqual({ count: 1 });
    } finally {
      log.restore();
    }
  });
});

describe("state that is not JSON", () => {
  const cycle = () => {
    const o: Record<string, unknown> = {};
    o.self = o;
    return o;
  };
  const values: Record<string, () => unknown> = {
    function: () => ({ fn: () => 1 }),
    nan: () => NaN,
    infinity: () => -Infinity,
    bigint: () => BigInt(1),
    cycle,
    date: () => new Date(0),
    map: () => new Map([["a", 1]]),
    undefined: () => undefined,
    symbol: () => Symbol("s"),
  };
  const bad = actor({
    state: { items: [0, 1, 2] as unknown[], ok: 0 },
    onAuth: () => null,
    onFetch: async (c, req) => {
      const url = new URL(req.url);
      const kind = url.searchParams.get("kind") ?? "";
      if (url.pathname === "/ok") {
        c.state.ok++;
        return Response.json(c.state);
      }
      if (url.pathname === "/fix") {
        c.state.items.length = 3;
        c.state.ok++;
        return Response.json(c.state);
      }
      c.state.items[3] = values[kind]();
      if (url.pathname === "/save-and-undo") {
        const message = await c.saveState().then(
          () => "saved",
          (err: Error) => err.message,
        );
        c.state.items.length = 3;
        return Response.json({ message });
      }
      return new Response("should never be sent");
    },
  });
  const store = new TestStore();
  const registry = setup({ use: { bad }, store });
  const app = mountRegistry(registry);
  let log: ReturnType<typeof captureErrorLog>;
  beforeEach(() => (log = captureErrorLog()));
  afterEach(() => log.restore());
  afterAll(() => registry.shutdown());

  const send = (key: string, path: string) =>
    request(app).post(`${RAW}${path}`).set("X-RivetKit-Actor-Query", actorQuery("bad", [key]));

  it.each([
    ["function", "state.items[3].fn is a function"],
    ["nan", "state.items[3] is NaN"],
    ["infinity", "state.items[3] is -Infinity"],
    ["bigint", "state.items[3] is a bigint"],
    ["cycle", "state.items[3].self is a circular reference"],
    ["date", "state.items[3] is a Date"],
    ["map", "state.items[3] is a Map"],
    ["undefined", "state.items[3] is undefined"],
    ["symbol", "state.items[3] is a symbol"],
  ])("a %s fails the save naming %j, keeping the last good state", async (kind, message) => {
    await send(kind, "/ok").expect(200);
    const res = await send(kind, `/bad?kind=${kind}`).expect(503);
    expect(res.headers["content-type"]).toMatch(/^application\/json/);
    expect(res.body).toEqual({ code: "state_save_failed", message: expect.any(String) });
    expect(res.text).not.toContain("should never be sent");
    expect(log.lines.some((l) => l.includes(message))).toBe(true);

    const { actorId } = (await request(app)
      .post("/registry/actors/resolve")
      .set("X-RivetKit-Actor-Query", actorQuery("bad", [kind]))
      .expect(200)).body;
    expect(await store.stored(actorId)).toEqual({ items: [0, 1, 2], ok: 1 });

    // Repairing the state lets the next save through.
    expect((await send(kind, "/fix").expect(200)).body).toEqual({ items: [0, 1, 2], ok: 2 });
    expect(await store.stored(actorId)).toEqual({ items: [0, 1, 2], ok: 2 });
  });

  it("rejects c.saveState() with an error naming the path", async () => {
    const res = await send("explicit", "/save-and-undo?kind=function").expect(200);
    expect(res.body.message).toContain("state.items[3].fn is a function");
  });
});

describe("replacing and restructuring state", () => {
  const store = new TestStore();
  const doc = actor({
    state: { title: "a", tags: [] as string[], meta: { edits: 0 } },
    onAuth: () => null,
    onFetch: (c, req) => {
      const path = new URL(req.url).pathname;
      if (path === "/replace") c.state = { title: "b", tags: ["x"], meta: { edits: 0 } };
      if (path === "/spread") c.state = { ...c.state, title: c.state.title + "!" };
      if (path === "/nested") {
        c.state.meta.edits++;
        c.state.tags.push("t" + c.state.meta.edits);
      }
      if (path === "/delete") delete (c.state as { title?: string }).title;
      return Response.json(c.state);
    },
  });
  const registry = setup({ use: { doc }, store });
  const client = registry.createServerClient();
  afterAll(() => registry.shutdown());

  it("persists a replaced state and keeps tracking changes below it", async () => {
    const handle = client.doc.getOrCreate(["d"]);
    const id = await handle.resolve();
    const hit = async (path: string) => (await handle.fetch(path)).json();

    await hit("/replace");
    expect(await store.stored(id)).toEqual({ title: "b", tags: ["x"], meta: { edits: 0 } });
    for (let i = 0; i < 5; i++) await hit("/spread");
    await hit("/nested");
    expect(await store.stored(id)).toEqual({ title: "b!!!!!", tags: ["x", "t1"], meta: { edits: 1 } });
    await hit("/delete");
    expect(await store.stored(id)).toEqual({ tags: ["x", "t1"], meta: { edits: 1 } });
  });
});

describe("c.saveState()", () => {
  const store = new TestStore();
  store.latencyMs = 15;
  const saver = actor({
    state: { n: 0 },
    onAuth: () => null,
    onFetch: async (c, req) => {
      const path = new URL(req.url).pathname;
      if (path === "/twice") {
        c.state.n++;
        const first = c.saveState();
        c.state.n++;
        await Promise.all([first, c.saveState()]);
      } else {
        c.state.n++;
        await c.saveState({ immediate: path === "/immediate" });
      }
      // What the store holds now is what the caller may rely on.
      return Response.json({ durable: await store.stored(c.actorId) });
    },
  });
  const idle = actor({
    state: { n: 0 },
    onFetch: async (c) => {
      await c.saveState();
      return Response.json({ saves: store.saveAttempts });
    },
  });
  const registry = setup({ use: { saver, idle }, store });
  const client = registry.createServerClient();
  afterAll(() => registry.shutdown());

  it("resolves only once the current state is durable", async () => {
    const handle = client.saver.getOrCreate(["s"]);
    expect(await (await handle.fetch("/")).json()).toEqual({ durable: { n: 1 } });
    expect(await (await handle.fetch("/immediate")).json()).toEqual({ durable: { n: 2 } });
    expect(await (await handle.fetch("/")).json()).toEqual({ durable: { n: 3 } });
  });

  it("waits for a second write when the state changed during the first", async () => {
    expect(await (await client.saver.getOrCreate(["q"]).fetch("/twice")).json()).toEqual({ durable: { n: 2 } });
  });

  it("resolves without writing when nothing changed", async () => {
    const handle = client.idle.getOrCreate(["i"]);
    await (await handle.fetch("/")).text();
    const before = store.saveAttempts;
    expect(await (await handle.fetch("/")).json()).toEqual({ saves: before });
  });
});

describe("an actor without state", () => {
  const log: string[] = [];
  const stateless = actor({
    onCreate: () => void log.push("create"),
    onStart: () => void log.push("start"),
    onStop: () => void log.push("stop"),
    onAuth: () => null,
    onFetch: (c) => Response.json({ state: c.state === undefined ? "undefined" : c.state }),
    options: { sleepTimeout: 30 },
  });
  const registry = setup({ use: { stateless } });
  const app = mountRegistry(registry);
  afterAll(() => registry.shutdown());

  it("answers requests, sleeps, and is created only once", async () => {
    const hit = () => request(app).get(`${RAW}/`).set("X-RivetKit-Actor-Query", actorQuery("stateless", ["x"])).expect(200);
    expect((await hit()).body).toEqual({ state: "undefined" });
    await waitFor(() => log.includes("stop"), "the actor to sleep");
    expect((await hit()).body).toEqual({ state: "undefined" });
    expect(log).toEqual(["create", "start", "stop", "start"]);
  });
});

describe("objects of other kinds in state", () => {
  const store = new TestStore();
  const odd = actor({
    state: { data: null as unknown, when: null as unknown },
    onAuth: () => null,
    onFetch: (c, req) => {
      const path = new URL(req.url).pathname;
      if (path === "/cloned") c.state.data = structuredClone({ list: [{ a: 1 }], nested: { b: 2 } });
      if (path === "/frozen") c.state.data = Object.freeze({ list: Object.freeze([Object.freeze({ a: 1 })]) });
      if (path === "/null-proto") c.state.data = Object.assign(Object.create(null), { a: 1 });
      if (path === "/date") {
        c.state.when = new Date(0);
        const year = (c.state.when as Date).getUTCFullYear();
        c.state.when = null;
        return Response.json({ year });
      }
      // Reading through the whole structure must work whatever was stored.
      return Response.json({ read: JSON.parse(JSON.stringify(c.state.data)) });
    },
  });
  const registry = setup({ use: { odd }, store });
  const client = registry.createServerClient();
  afterAll(() => registry.shutdown());

  it.each([
    ["/cloned", { list: [{ a: 1 }], nested: { b: 2 } }],
    ["/frozen", { list: [{ a: 1 }] }],
    ["/null-proto", { a: 1 }],
  ])("reads and saves what %s stored", async (path, expected) => {
    const handle = client.odd.getOrCreate([path]);
    const res = await handle.fetch(path);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ read: expected });
    expect(await store.stored(await handle.resolve())).toEqual({ data: expected, when: null });
  });

  it("keeps a Date's methods working while it is in state", async () => {
    const res = await client.odd.getOrCreate(["date"]).fetch("/date");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ year: 1970 });
  });
});
