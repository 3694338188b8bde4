import express from "express";
import WebSocket from "ws";
import { actor, Forbidden, setup, Unauthorized, UserError } from "express-actors";
import { captureErrorLog, deferred, delay, TestStore, waitFor } from "./helpers/actor-harness";
import {
  actorProtocols,
  connectActor,
  getOrCreate,
  startWsApp,
  within,
  WsClient,
  type WsApp,
} from "./helpers/ws-harness";
import { probeActor, types, type ServerSide } from "./helpers/ws-probe";

// SPEC §5 WebSocket close codes (reason = the error code) and §7 "never crashes the process".

const authCalls: Array<{ intents: string[]; params: unknown; headers: string[]; url: string }> = [];

const probe = probeActor({}, ({ request, intents, params }: { request: Request; intents: Set<string>; params: any }) => {
  authCalls.push({ intents: [...intents].sort(), params, headers: [...request.headers.keys()], url: request.url });
  switch (params?.mode) {
    case "user":
      throw new UserError("Bad token", { code: "bad_token" });
    case "unauthorized":
      throw new Unauthorized();
    case "forbidden":
      throw new Forbidden();
    case "crash":
      throw new Error("onAuth secret detail");
    default:
      return { user: params?.user ?? null };
  }
});
const closed = actor({ state: {}, onWebSocket: () => {} });
const httpOnly = actor({ state: {}, onAuth: () => null, onFetch: () => new Response("ok") });
const registry = setup({ use: { probe: probe.definition, closed, httpOnly } });

let app: WsApp;
let unique = 0;
let logged: ReturnType<typeof captureErrorLog>;

beforeAll(async () => {
  app = await startWsApp({ express, registry, middleware: { maxWebSocketMessageSize: 1024 } });
});
afterAll(async () => {
  await app.close();
  await registry.shutdown();
});
// An uncaught exception or unhandled rejection fails the running test under jest; the child-process
// test in websocket-process.test.ts checks the same with a real process listener.
beforeEach(() => {
  logged = captureErrorLog();
});
afterEach(() => logged.restore());

const fresh = () => [`e${++unique}`];
const raw = (protocols: string[], headers: Record<string, string> = {}, path = "/") =>
  new WsClient(`${app.wsUrl}/registry/actors/raw/websocket${path}`, protocols, { headers });

/** The socket opens (a browser cannot read a refused handshake) and then closes with `code` / `reason`. */
async function expectRefused(client: WsClient, code: number, reason: string) {
  await within(client.opened, "open before refusal");
  expect(await within(client.closed, "close")).toEqual({ code, reason });
}

describe("refusals close with the SPEC §5 code and reason = the error code", () => {
  it("4400 invalid_query for a malformed query entry, a missing query or a bad key", async () => {
    await expectRefused(raw(["rivetkit", "query.%7Bnot-json", "encoding.json"]), 4400, "invalid_query");
    await expectRefused(raw(["rivetkit", "query.%ZZ", "encoding.json"]), 4400, "invalid_query");
    await expectRefused(raw(["rivetkit", "encoding.json"]), 4400, "invalid_query");
    await expectRefused(raw(actorProtocols({ getOrCreateForKey: { name: "probe", key: [1] } })), 4400, "invalid_query");
    await expectRefused(raw(actorProtocols({ nonsense: {} })), 4400, "invalid_query");
    const badParams = actorProtocols(getOrCreate("probe", fresh())).concat("conn_params.%7B");
    await expectRefused(raw(badParams), 4400, "invalid_query");
  });

  it("4400 invalid_encoding for an encoding other than json", async () => {
    await expectRefused(raw(actorProtocols(getOrCreate("probe", fresh()), { encoding: "cbor" })), 4400, "invalid_encoding");
  });

  it("4400 with the UserError's code, 4401, 4403 from onAuth", async () => {
    await expectRefused(connectActor(app, getOrCreate("probe", fresh()), { params: { mode: "user" } }), 4400, "bad_token");
    await expectRefused(connectActor(app, getOrCreate("probe", fresh()), { params: { mode: "unauthorized" } }), 4401, "unauthorized");
    await expectRefused(connectActor(app, getOrCreate("probe", fresh()), { params: { mode: "forbidden" } }), 4403, "forbidden");
  });

  it("4403 forbidden for an actor without onAuth", async () => {
    await expectRefused(connectActor(app, getOrCreate("closed", fresh())), 4403, "forbidden");
  });

  it("4404 actor_not_found for an unknown name, key or id; 4404 websocket_not_defined without onWebSocket", async () => {
    await expectRefused(connectActor(app, getOrCreate("nope", fresh())), 4404, "actor_not_found");
    await expectRefused(connectActor(app, { getForKey: { name: "probe", key: fresh() } }), 4404, "actor_not_found");
    await expectRefused(connectActor(app, { getForId: { name: "probe", actorId: "missing" } }), 4404, "actor_not_found");
    await expectRefused(connectActor(app, getOrCreate("httpOnly", fresh())), 4404, "websocket_not_defined");
  });

  it("4409 actor_already_exists for create on an existing key", async () => {
    const key = fresh();
    const first = connectActor(app, { create: { name: "probe", key } });
    await within(first.opened, "first open");
    await expectRefused(connectActor(app, { create: { name: "probe", key } }), 4409, "actor_already_exists");
    first.ws.close();
  });

  it("1011 internal_error when onAuth throws anything else; the message never reaches the client", async () => {
    await expectRefused(connectActor(app, getOrCreate("probe", fresh()), { params: { mode: "crash" } }), 1011, "internal_error");
    await waitFor(() => logged.lines.some((l) => l.includes("onAuth secret detail")), "the error logged");
  });

  it("accepts the query in X-RivetKit-* headers from Node clients, and refuses a bad one the same way", async () => {
    const key = fresh();
    const next = probe.next();
    const ok = raw([], { "X-RivetKit-Actor-Query": JSON.stringify(getOrCreate("probe", key)), "X-RivetKit-Conn-Params": '{"user":"h"}' });
    const side = await within(next, "onWebSocket");
    await ok.opened;
    expect(side.c.key).toEqual(key);
    expect(side.auth).toEqual({ user: "h" });
    expect(ok.ws.protocol).toBe("");
    for (const name of side.request.headers.keys()) expect(name).not.toMatch(/^x-rivetkit-/);
    ok.ws.close();
    await expectRefused(raw([], { "X-RivetKit-Actor-Query": "{" }), 4400, "invalid_query");
    await expectRefused(
      raw([], { "X-RivetKit-Actor-Query": JSON.stringify(getOrCreate("probe", key)), "X-RivetKit-Encoding": "cbor" }),
      4400,
      "invalid_encoding",
    );
  });

  it("runs onAuth with the websocket intent, conn params and a request without X-RivetKit-* headers", async () => {
    authCalls.length = 0;
    const next = probe.next();
    const client = connectActor(app, getOrCreate("probe", fresh()), { params: { user: "ann" }, path: "/p?q=1" });
    const side = await within(next, "onWebSocket");
    expect(authCalls).toHaveLength(1);
    expect(authCalls[0]).toMatchObject({ intents: ["create", "get", "websocket"], params: { user: "ann" }, url: `${app.url}/p?q=1` });
    expect(authCalls[0].headers.filter((h) => h.startsWith("x-rivetkit-"))).toEqual([]);
    expect(side.auth).toEqual({ user: "ann" });
    client.ws.close();
  });
});

describe("failures inside the actor close that socket, never the process", () => {
  /** Opens a socket whose onWebSocket runs `script`. */
  async function open(script: (side: ServerSide) => unknown) {
    const key = fresh();
    probe.script(key[0], script);
    const next = probe.next();
    const client = connectActor(app, getOrCreate("probe", key));
    return { client, side: await within(next, "onWebSocket") };
  }

  it.each([
    ["throws", () => {
      throw new Error("handler secret detail");
    }],
    ["rejects", async () => {
      await delay(5);
      throw new Error("handler secret detail");
    }],
  ])("onWebSocket that %s → 1011 internal_error", async (_label, script) => {
    const { client } = await open(script);
    await expectRefused(client, 1011, "internal_error");
    await waitFor(() => logged.lines.some((l) => l.includes("handler secret detail")), "the error logged");
  });

  it("onWebSocket that throws a UserError → 4400 with its code", async () => {
    const { client } = await open(() => {
      throw new UserError("nope", { code: "room_full" });
    });
    await expectRefused(client, 4400, "room_full");
  });

  it.each([
    ["a throwing listener", (s: ServerSide) => s.ws.addEventListener("message", () => {
      throw new Error("listener secret");
    })],
    ["a rejecting async listener", (s: ServerSide) => s.ws.addEventListener("message", async () => {
      await delay(1);
      throw new Error("listener secret");
    })],
    ["a throwing onmessage", (s: ServerSide) => {
      s.ws.onmessage = () => {
        throw new Error("listener secret");
      };
    }],
    ["a throwing open listener", (s: ServerSide) => s.ws.addEventListener("open", () => {
      throw new Error("listener secret");
    })],
  ])("%s → 1011 internal_error, other sockets unaffected", async (_label, script) => {
    const other = await open(() => {});
    await other.client.opened;
    const { client, side } = await open(script);
    await client.opened;
    client.send("boom");
    expect(await within(client.closed, "close")).toEqual({ code: 1011, reason: "internal_error" });
    await within(side.closed, "server close");
    expect(logged.lines.some((l) => l.includes("listener secret"))).toBe(true);
    expect(other.side.ws.readyState).toBe(1);
    other.client.send("still here");
    await waitFor(() => types(other.side).includes("message"), "other socket still served");
    other.client.ws.close();
  });

  it("a frame over maxWebSocketMessageSize → client sees 1009 message_too_big; the server stays up", async () => {
    const { client, side } = await open(() => {});
    await client.opened;
    client.send("x".repeat(1024));
    client.send(Buffer.alloc(1025));
    expect(await within(client.closed, "close")).toEqual({ code: 1009, reason: "message_too_big" });
    await within(side.closed, "server close");
    expect(types(side)).toEqual(["open", "message", "error", "close"]);
    const again = await open(() => {});
    await within(again.client.opened, "a new socket opens");
    again.client.ws.close();
  });

  it("a fragmented message over the limit is refused before it is buffered whole", async () => {
    const { client, side } = await open(() => {});
    await client.opened;
    client.ws.send(Buffer.alloc(800), { fin: false });
    client.ws.send(Buffer.alloc(800), { fin: true });
    expect(await within(client.closed, "close")).toEqual({ code: 1009, reason: "message_too_big" });
    await side.closed;
    expect(types(side)).not.toContain("message");
  });
});

describe("state save failures and shutdown", () => {
  it("1011 state_save_failed when the state cannot be saved after setup", async () => {
    const store = new TestStore();
    const p = probeActor();
    const reg = setup({ use: { probe: p.definition }, store });
    const local = await startWsApp({ express, registry: reg });
    try {
      store.setFailing(true);
      const client = connectActor(local, getOrCreate("probe", ["x"]));
      await expectRefused(client, 1011, "state_save_failed");
    } finally {
      store.setFailing(false);
      await local.close();
      await reg.shutdown();
    }
  });

  it("registry.shutdown() closes open sockets with 1001 shutting_down and saves their state", async () => {
    const store = new TestStore();
    const p = probeActor();
    p.script("room", (s) => {
      s.ws.addEventListener("message", (e) => s.c.state.log.push(e.data));
      s.ws.addEventListener("close", (e) => s.c.state.log.push(`closed ${(e as CloseEvent).code}`));
    });
    const reg = setup({ use: { probe: p.definition }, store });
    const local = await startWsApp({ express, registry: reg });
    try {
      const sides = [p.next(), p.next()];
      const a = connectActor(local, getOrCreate("probe", ["room"]));
      const b = connectActor(local, getOrCreate("probe", ["room"]));
      const [sa] = await Promise.all(sides);
      await Promise.all([a.opened, b.opened]);
      a.send("before shutdown");
      await waitFor(() => sa.c.state.log.length === 1, "message stored");
      await reg.shutdown();
      expect(await within(a.closed, "a closed")).toEqual({ code: 1001, reason: "shutting_down" });
      expect(await within(b.closed, "b closed")).toEqual({ code: 1001, reason: "shutting_down" });
      expect(await store.stored(sa.c.actorId)).toEqual({ log: ["before shutdown", "closed 1001", "closed 1001"] });
      expect(store.closed).toBe(true);
      await expectRefused(connectActor(local, getOrCreate("probe", ["room"])), 1001, "shutting_down");
    } finally {
      await local.close();
    }
  });
});

describe("raw ws clients", () => {
  it("an upgrade that offers no rivetkit marker still works when the query comes in protocol entries", async () => {
    const key = fresh();
    const next = probe.next();
    const client = new WsClient(
      `${app.wsUrl}/registry/actors/raw/websocket/`,
      actorProtocols(getOrCreate("probe", key), { marker: false, user: ["v1"] }),
    );
    const side = await within(next, "onWebSocket");
    await client.opened;
    expect(side.ws.protocol).toBe("v1");
    client.ws.close();
  });

  it("a client that offers only transport entries is refused by its own library, never given query.* as protocol", async () => {
    const client = new WebSocket(
      `${app.wsUrl}/registry/actors/raw/websocket/`,
      actorProtocols(getOrCreate("probe", fresh()), { marker: false }),
    );
    const outcome = await new Promise<string>((resolve) => {
      client.on("open", () => resolve(`open:${client.protocol}`));
      client.on("error", (err) => resolve(`error:${err.message}`));
    });
    expect(outcome).not.toMatch(/^open:(query|encoding|conn_params)\./);
    client.terminate();
  });
});

describe("shutdown racing an upgrade", () => {
  it("closes with 1001 a socket whose actor finished activating after shutdown began", async () => {
    const started = deferred();
    const gate = deferred();
    const slow = actor({
      state: {},
      onAuth: () => null,
      onStart: async () => {
        started.resolve();
        await gate.promise;
      },
      onWebSocket: () => {},
    });
    const reg = setup({ use: { slow } });
    const local = await startWsApp({ express, registry: reg });
    try {
      const client = connectActor(local, getOrCreate("slow", ["late"]));
      await within(started.promise, "activation to start");
      const shutdown = reg.shutdown();
      gate.resolve();
      expect(await within(client.closed, "close", 3000)).toEqual({ code: 1001, reason: "shutting_down" });
      await within(shutdown, "shutdown", 3000);
    } finally {
      await local.close();
    }
  });
});
