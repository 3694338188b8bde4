import request from "supertest";
import { actor, setup, type ActorOptions } from "express-actors";
import { listen } from "./helpers/servers";
import {
  RAW,
  TestStore,
  actorQuery,
  deferred,
  delay,
  mountRegistry,
  waitFor,
  type Deferred,
} from "./helpers/actor-harness";

/** An actor that records every hook call in `events` as "hook key". */
function recorder(events: string[], options: ActorOptions, gates: Map<string, Deferred> = new Map()) {
  return actor({
    state: { count: 0, stops: 0 },
    onCreate: (c) => void events.push(`create ${c.key[0]}`),
    onStart: (c) => void events.push(`start ${c.key[0]}`),
    onStop: (c) => {
      events.push(`stop ${c.key[0]}`);
      c.state.stops++;
    },
    onAuth: () => null,
    onFetch: async (c, req) => {
      const path = new URL(req.url).pathname;
      if (path === "/slow") await gates.get(c.key[0])!.promise;
      if (path === "/sleep") c.sleep();
      if (req.method === "POST") c.state.count++;
      return Response.json(c.state);
    },
    options,
  });
}

const count = (events: string[], event: string) => events.filter((e) => e === event).length;

describe("onCreate, onStart and onStop", () => {
  const events: string[] = [];
  const store = new TestStore();
  const counter = recorder(events, { sleepTimeout: 40 });

  it("runs onCreate once ever, onStart per activation, and saves after onStop", async () => {
    const first = setup({ use: { counter }, store });
    const client = first.createServerClient();
    const handle = client.counter.getOrCreate(["a"]);
    const id = await handle.resolve();

    expect(await (await handle.fetch("/", { method: "POST" })).json()).toEqual({ count: 1, stops: 0 });
    expect(events).toEqual(["create a", "start a"]);

    await waitFor(() => events.includes("stop a"), "the actor to sleep");
    expect(await store.stored(id)).toEqual({ count: 1, stops: 1 });

    expect(await (await handle.fetch("/", { method: "POST" })).json()).toEqual({ count: 2, stops: 1 });
    expect(events).toEqual(["create a", "start a", "stop a", "start a"]);

    // A restart: a new registry on the same store.
    await first.shutdown();
    expect(events).toEqual(["create a", "start a", "stop a", "start a", "stop a"]);
    expect(await store.stored(id)).toEqual({ count: 2, stops: 2 });

    const second = setup({ use: { counter }, store });
    try {
      const again = second.createServerClient().counter.getOrCreate(["a"]);
      expect(await (await again.fetch("/", { method: "POST" })).json()).toEqual({ count: 3, stops: 2 });
      expect(await again.resolve()).toBe(id);
      expect(count(events, "create a")).toBe(1);
      expect(count(events, "start a")).toBe(3);
    } finally {
      await second.shutdown();
    }
  });
});

describe("concurrent first requests", () => {
  const creates: string[] = [];
  const starts: string[] = [];
  const store = new TestStore();
  // Store latency widens the window in which requests race.
  store.latencyMs = 5;
  const counter = actor({
    createState: (c) => {
      creates.push(c.key[0]);
      return { count: 0 };
    },
    onStart: (c) => void starts.push(c.key[0]),
    onAuth: () => null,
    onFetch: async (c) => {
      c.state.count++;
      return Response.json(c.state);
    },
  });
  const registry = setup({ use: { counter }, store });
  const app = mountRegistry(registry);
  const client = registry.createServerClient();
  let server: Awaited<ReturnType<typeof listen>>;
  beforeAll(async () => (server = await listen(app)));
  afterAll(async () => {
    await server.close();
    await registry.shutdown();
  });

  const send = (key: string, kind: "getOrCreateForKey" | "create") =>
    fetch(`${server.url}${RAW}/`, { method: "POST", headers: { "X-RivetKit-Actor-Query": actorQuery("counter", [key], kind) } });

  it("share one activation over HTTP (getOrCreate)", async () => {
    const responses = await Promise.all(Array.from({ length: 50 }, () => send("http", "getOrCreateForKey")));
    expect(responses.map((r) => r.status)).toEqual(Array(50).fill(200));
    const counts = await Promise.all(responses.map(async (r) => (await r.json()).count));
    expect([...counts].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(creates.filter((k) => k === "http")).toHaveLength(1);
    expect(starts.filter((k) => k === "http")).toHaveLength(1);
  });

  it("share one activation through the server client", async () => {
    const responses = await Promise.all(
      Array.from({ length: 50 }, () => client.counter.getOrCreate(["srv"]).fetch("/", { method: "POST" })),
    );
    await Promise.all(responses.map((r) => r.text()));
    expect(creates.filter((k) => k === "srv")).toHaveLength(1);
    expect(starts.filter((k) => k === "srv")).toHaveLength(1);
    expect(await (await client.counter.get(["srv"]).fetch("/")).json()).toEqual({ count: 51 });
  });

  it("let exactly one create win over HTTP; the rest get 409 actor_already_exists", async () => {
    const responses = await Promise.all(Array.from({ length: 20 }, () => send("made", "create")));
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(19);
    for (const r of responses.filter((r) => r.status === 409)) {
      expect(await r.json()).toEqual({ code: "actor_already_exists", message: expect.any(String) });
    }
    expect(creates.filter((k) => k === "made")).toHaveLength(1);
    // An existing actor refuses create later too.
    expect((await send("made", "create")).status).toBe(409);
  });

  it("let exactly one create win through the server client", async () => {
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => client.counter.create(["srv-made"])));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    expect(rejected).toHaveLength(19);
    for (const r of rejected) expect(r.reason.code).toBe("actor_already_exists");
  });
});

describe("sleeping", () => {
  const events: string[] = [];
  const gates = new Map<string, Deferred>();
  const store = new TestStore();
  const napper = recorder(events, { sleepTimeout: 30 }, gates);
  const awake = recorder(events, { sleepTimeout: 60_000 }, gates);
  const streamer = actor({
    state: { chunks: 0 },
    onStart: (c) => void events.push(`start ${c.key[0]}`),
    onStop: (c) => void events.push(`stop ${c.key[0]}`),
    onAuth: () => null,
    onFetch: (c) => {
      const gate = gates.get(c.key[0])!;
      const encoder = new TextEncoder();
      let sent = false;
      return new Response(
        new ReadableStream<Uint8Array>({
          async pull(controller) {
            if (!sent) {
              sent = true;
              controller.enqueue(encoder.encode("first "));
              return;
            }
            await gate.promise;
            c.state.chunks++;
            controller.enqueue(encoder.encode("last"));
            controller.close();
          },
        }),
      );
    },
    options: { sleepTimeout: 30 },
  });
  const registry = setup({ use: { napper, awake, streamer }, store });
  const app = mountRegistry(registry);
  const client = registry.createServerClient();
  let server: Awaited<ReturnType<typeof listen>>;
  beforeAll(async () => (server = await listen(app)));
  afterAll(async () => {
    await server.close();
    await registry.shutdown();
  });

  const hit = async (name: string, key: string, path = "/") =>
    (await request(app).post(`${RAW}${path}`).set("X-RivetKit-Actor-Query", actorQuery(name, [key])).expect(200)).body;

  it("sleeps after sleepTimeout and wakes from the store with its state", async () => {
    // Together, so no idle gap (however slow the machine) lets it sleep between them.
    const first = await Promise.all([hit("napper", "s"), hit("napper", "s"), hit("napper", "s")]);
    expect(first.sort((a, b) => a.count - b.count)).toEqual([1, 2, 3].map((count) => ({ count, stops: 0 })));
    await waitFor(() => events.includes("stop s"), "the actor to sleep");
    expect(await hit("napper", "s")).toEqual({ count: 4, stops: 1 });
    expect(events.filter((e) => e.endsWith(" s"))).toEqual(["create s", "start s", "stop s", "start s"]);
  });

  it("stays awake while a request is in flight", async () => {
    const gate = deferred();
    gates.set("busy", gate);
    await hit("napper", "busy");
    const slow = hit("napper", "busy", "/slow");
    await delay(200);
    expect(events).not.toContain("stop busy");
    gate.resolve();
    expect(await slow).toEqual({ count: 2, stops: 0 });
    await waitFor(() => events.includes("stop busy"), "the actor to sleep once idle");
  });

  it("stays awake while a streamed response is unfinished (HTTP)", async () => {
    const gate = deferred();
    gates.set("stream-http", gate);
    const res = await fetch(`${server.url}${RAW}/`, {
      headers: { "X-RivetKit-Actor-Query": actorQuery("streamer", ["stream-http"]) },
    });
    const reader = res.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("first ");
    await delay(200);
    expect(events).not.toContain("stop stream-http");
    gate.resolve();
    let rest = "";
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value);
    expect(rest).toBe("last");
    await waitFor(() => events.includes("stop stream-http"), "the actor to sleep once the stream ended");
  });

  it("stays awake while a streamed response is unfinished (server client)", async () => {
    const gate = deferred();
    gates.set("stream-srv", gate);
    const res = await client.streamer.getOrCreate(["stream-srv"]).fetch("/");
    const reader = res.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("first ");
    await delay(200);
    expect(events).not.toContain("stop stream-srv");
    gate.resolve();
    while (!(await reader.read()).done);
    await waitFor(() => events.includes("stop stream-srv"), "the actor to sleep once the stream ended");
    // The change made while streaming survived the sleep.
    const id = await client.streamer.get(["stream-srv"]).resolve();
    expect(await store.stored(id)).toEqual({ chunks: 1 });
  });

  it("sleeps soon after c.sleep(), however long its sleepTimeout", async () => {
    expect(await hit("awake", "nap", "/sleep")).toEqual({ count: 1, stops: 0 });
    await waitFor(() => events.includes("stop nap"), "the actor to sleep");
    expect(await hit("awake", "nap")).toEqual({ count: 2, stops: 1 });
    expect(events.filter((e) => e.endsWith(" nap"))).toEqual(["create nap", "start nap", "stop nap", "start nap"]);
  });

  it("does not sleep before sleepTimeout", async () => {
    await hit("awake", "long");
    await delay(100);
    expect(events).not.toContain("stop long");
  });
});

describe("registry.shutdown()", () => {
  const events: string[] = [];
  const gates = new Map<string, Deferred>();
  const entered = deferred();
  const store = new TestStore();
  const worker = actor({
    state: { count: 0, late: false, stopped: false },
    onStart: (c) => void events.push(`start ${c.key[0]}`),
    onStop: (c) => {
      events.push(`stop ${c.key[0]}`);
      c.state.stopped = true;
    },
    onAuth: () => null,
    onFetch: async (c, req) => {
      const path = new URL(req.url).pathname;
      if (path === "/slow") {
        entered.resolve();
        await gates.get("slow")!.promise;
        events.push("slow done");
      }
      // A change made after the response, which only a final save can persist.
      if (path === "/later") setTimeout(() => (c.state.late = true), 5);
      c.state.count++;
      return Response.json(c.state);
    },
    options: { stateSaveInterval: 60_000, sleepTimeout: 60_000 },
  });
  const registry = setup({ use: { worker }, store });
  const app = mountRegistry(registry);
  const client = registry.createServerClient();
  let server: Awaited<ReturnType<typeof listen>>;
  beforeAll(async () => (server = await listen(app)));
  afterAll(() => server.close());

  const send = (key: string, path: string) =>
    fetch(`${server.url}${RAW}${path}`, { headers: { "X-RivetKit-Actor-Query": actorQuery("worker", [key]) } });

  it("refuses new work, finishes in-flight work, runs onStop, saves and closes the store", async () => {
    expect((await send("other", "/later")).status).toBe(200);
    const otherId = await client.worker.get(["other"]).resolve();
    await delay(20);

    gates.set("slow", deferred());
    const slow = send("main", "/slow");
    await entered.promise;
    const mainId = await client.worker.get(["main"]).resolve();
    const done = registry.shutdown();

    const refused = await send("main", "/");
    expect(refused.status).toBe(503);
    expect(refused.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await refused.json()).toEqual({ code: "shutting_down", message: expect.any(String) });
    const viaClient = await client.worker.getOrCreate(["main"]).fetch("/");
    expect(viaClient.status).toBe(503);
    expect((await viaClient.json()).code).toBe("shutting_down");
    await expect(client.worker.create(["new"])).rejects.toMatchObject({ code: "shutting_down" });
    expect(events).not.toContain("stop main");

    gates.get("slow")!.resolve();
    const res = await slow;
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ count: 1, late: false, stopped: false });
    await done;

    expect(events.indexOf("slow done")).toBeLessThan(events.indexOf("stop main"));
    expect(events).toContain("stop other");
    expect(await store.stored(mainId)).toEqual({ count: 1, late: false, stopped: true });
    expect(await store.stored(otherId)).toEqual({ count: 1, late: true, stopped: true });
    expect(store.closed).toBe(true);
    expect((await send("main", "/")).status).toBe(503);
  });
});

describe("activation edge cases", () => {
  const events: string[] = [];
  const store = new TestStore();
  let failCreate = true;
  const fragile = actor({
    createState: () => {
      events.push("createState");
      if (failCreate) throw new Error("not yet");
      return { ok: true };
    },
    onCreate: () => void events.push("create"),
    onAuth: () => null,
    onFetch: (c) => Response.json(c.state),
  });
  const slowStop = actor({
    state: { stops: 0, wakes: 0 },
    onStart: (c) => void events.push(`start ${c.key[0]}`),
    onStop: async (c) => {
      events.push(`stopping ${c.key[0]}`);
      await delay(50);
      c.state.stops++;
    },
    onFetch: (c, req) => {
      if (new URL(req.url).pathname === "/zombie") setTimeout(() => (c.state.wakes = -1), 150);
      else c.state.wakes++;
      return Response.json(c.state);
    },
    options: { sleepTimeout: 20, stateSaveInterval: 10 },
  });
  const brokenStop = actor({
    state: { n: 0 },
    onStop: (c) => {
      c.state.n = 100;
      throw new Error("onStop broke");
    },
    onFetch: (c) => Response.json(c.state),
  });
  const registry = setup({ use: { fragile, slowStop, brokenStop }, store });
  const app = mountRegistry(registry);
  const client = registry.createServerClient();
  afterAll(() => registry.shutdown());

  it("answers 500 internal_error when activation fails, and retries on the next request", async () => {
    const log = jest.spyOn(console, "error").mockImplementation(() => {});
    try {
      const query = actorQuery("fragile", ["f"]);
      const failed = await request(app).get(`${RAW}/`).set("X-RivetKit-Actor-Query", query).expect(500);
      expect(failed.body).toEqual({ code: "internal_error", message: "Internal error" });
      expect(failed.text).not.toContain("not yet");
      failCreate = false;
      expect((await request(app).get(`${RAW}/`).set("X-RivetKit-Actor-Query", query).expect(200)).body).toEqual({ ok: true });
      expect(events).toEqual(["createState", "createState", "create"]);
    } finally {
      log.mockRestore();
    }
  });

  it("does not create an actor for a get", async () => {
    const res = await request(app).get(`${RAW}/`).set("X-RivetKit-Actor-Query", actorQuery("fragile", ["nobody"], "getForKey")).expect(404);
    expect(res.body.code).toBe("actor_not_found");
    expect(await store.lookupKey("fragile", ["nobody"])).toBeUndefined();
  });

  it("wakes an actor again for a request that arrives while it is going to sleep", async () => {
    const handle = client.slowStop.getOrCreate(["mid"]);
    expect(await (await handle.fetch("/")).json()).toEqual({ stops: 0, wakes: 1 });
    await waitFor(() => events.includes("stopping mid"), "the actor to start sleeping");
    expect(await (await handle.fetch("/")).json()).toEqual({ stops: 1, wakes: 2 });
    expect(events.filter((e) => e.endsWith(" mid"))).toEqual(["start mid", "stopping mid", "start mid"]);
  });

  it("never saves a change a stopped activation makes, so it cannot overwrite a newer one", async () => {
    const warn = jest.spyOn(console, "warn").mockImplementation(() => {});
    try {
      const handle = client.slowStop.getOrCreate(["zombie"]);
      const id = await handle.resolve();
      await (await handle.fetch("/zombie")).text();
      await waitFor(() => events.includes("stopping zombie"), "the actor to sleep");
      await delay(60);
      expect(await (await handle.fetch("/")).json()).toEqual({ stops: 1, wakes: 1 });
      // The first activation's timer fires now, long after it stopped.
      await delay(200);
      expect(await store.stored(id)).toMatchObject({ wakes: 1 });
      expect(warn.mock.calls.flat().join(" ")).toContain("not saved");
    } finally {
      warn.mockRestore();
    }
  });

  it("saves what onStop changed even when onStop throws, and logs the error", async () => {
    const log = jest.spyOn(console, "error").mockImplementation(() => {});
    const local = setup({ use: { brokenStop }, store });
    try {
      const handle = local.createServerClient().brokenStop.getOrCreate(["b"]);
      const id = await handle.resolve();
      await (await handle.fetch("/")).text();
      await local.shutdown();
      expect(await store.stored(id)).toEqual({ n: 100 });
      expect(log.mock.calls.flat().map(String).join(" ")).toContain("onStop broke");
    } finally {
      log.mockRestore();
    }
  });
});
