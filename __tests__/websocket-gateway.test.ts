import { memoryStore, type StateStore } from "express-actors";
import { gatewayRegistry, type GatewayLog } from "./fixtures/gateway-actors";
import { captureErrorLog, delay } from "./helpers/actor-harness";
import { expressVersions } from "./helpers/servers";
import { actorProtocols, getOrCreate, startWsApp, within, WsClient, type WsApp } from "./helpers/ws-harness";
import { selectableProtocols } from "../lib/websocket/upgrade";

// SPEC §10: `GET {mount}/gateway/{actorId|name}/websocket/{path}` as RivetKit's client opens it,
// with a plain `ws` client so every byte of the handshake is ours to choose. Runs on ws 7 and 8.

const params = (value: unknown) => "rivet_conn_params." + encodeURIComponent(JSON.stringify(value));
const RIVET = ["rivet", "rivet_encoding.bare"];

/** memoryStore whose id lookups take a while, so frames can arrive before the gateway knows the actor. */
function slowIdLookups(inner: StateStore, ms: number): StateStore {
  return { ...inner, lookupId: async (actorId) => (await delay(ms), inner.lookupId(actorId)) };
}

describe("which subprotocol the handshake selects", () => {
  it("`rivet` for RivetKit's offer, wherever it stands; never a rivet_* entry", () => {
    expect(selectableProtocols(["rivet", "rivet_encoding.bare", params({ a: 1 })])).toEqual(["rivet"]);
    expect(selectableProtocols(["rivet_encoding.bare", "rivet_conn_params.x", "rivet"])).toEqual(["rivet"]);
    expect(selectableProtocols(["rivet", "chat"])).toEqual(["rivet", "chat"]);
  });

  it("the router's offers are unchanged (SPEC §2)", () => {
    expect(selectableProtocols(["rivetkit", "query.x", "encoding.json", "chat"])).toEqual(["chat", "rivetkit"]);
    expect(selectableProtocols(["rivetkit", "query.x", "rivet"])).toEqual(["rivet", "rivetkit"]);
    expect(selectableProtocols(["chat", "rivet_thing"])).toEqual(["chat", "rivet_thing"]);
  });
});

describe.each(expressVersions)("gateway WebSockets on $label", ({ express }) => {
  let app: WsApp;
  let log: GatewayLog;
  let made: ReturnType<typeof gatewayRegistry>;
  let unique = 0;
  const k = (label: string) => `${label}-${++unique}`;

  beforeAll(async () => {
    made = gatewayRegistry({ store: slowIdLookups(memoryStore(), 50) });
    log = made.log;
    app = await startWsApp({ express, registry: made.registry });
  });
  afterAll(async () => {
    await app.close();
    await made.registry.shutdown();
  });

  const idOf = (key: string[], name: "counter" | "secret" | "bare" = "counter") => made.registry.createServerClient()[name].getOrCreate(key).resolve();
  const open = (path: string, protocols: string[] = RIVET) => new WsClient(`${app.wsUrl}/registry${path}`, protocols);
  const hello = async (client: WsClient) => JSON.parse((await client.received(1))[0].text);

  it("by id: selects `rivet`, hides the rivet_* entries and x-rivet-* headers, hands the conn params to onAuth", async () => {
    const key = [k("id")];
    const id = await idOf(key);
    const before = log.auth.length;
    const client = new WsClient(`${app.wsUrl}/registry/gateway/${id}/websocket/chat?room=1`, [...RIVET, params({ token: "abc" })], {
      headers: { "x-rivet-token": "t", "x-custom": "kept" },
    });
    await within(client.opened, "open");
    expect(client.ws.protocol).toBe("rivet");
    const seen = await hello(client);
    expect(seen.url).toBe(`${app.url}/chat?room=1`);
    expect(seen.socketUrl).toBe(`${app.wsUrl}/chat?room=1`);
    expect(seen.key).toEqual(key);
    expect(seen.auth).toEqual({ params: { token: "abc" } });
    expect(seen.headers["sec-websocket-protocol"]).toBe("rivet");
    expect(seen.headers["x-custom"]).toBe("kept");
    expect(Object.keys(seen.headers).filter((name) => name.startsWith("x-rivet"))).toEqual([]);
    expect(log.auth.slice(before).map((c) => [c.source, c.intents, c.params])).toEqual([["gateway", ["get", "websocket"], { token: "abc" }]]);
    client.ws.close();
  });

  it("frames sent at once are not lost while the actor id is looked up", async () => {
    const id = await idOf([k("early")]);
    const client = open(`/gateway/${id}/websocket/`);
    await within(client.opened, "open");
    for (let i = 0; i < 5; i++) client.send(`m${i}`);
    const messages = await client.received(6);
    expect(messages.slice(1).map((m) => m.text)).toEqual(["m0", "m1", "m2", "m3", "m4"]);
    client.ws.close();
  });

  it("selects `rivet` even when the offer does not start with it", async () => {
    const id = await idOf([k("order")]);
    const client = open(`/gateway/${id}/websocket/`, ["rivet_encoding.bare", params({ token: "x" }), "rivet"]);
    await within(client.opened, "open");
    expect(client.ws.protocol).toBe("rivet");
    expect((await hello(client)).auth).toEqual({ params: { token: "x" } });
    client.ws.close();
  });

  it("with no subprotocol at all", async () => {
    const id = await idOf([k("none")]);
    const client = open(`/gateway/${id}/websocket/x`, []);
    await within(client.opened, "open");
    expect(client.ws.protocol).toBe("");
    expect((await hello(client)).url).toBe(`${app.url}/x`);
    client.ws.close();
  });

  it("the query gateway: get-or-create by name, rvt-* stripped from the actor's URL", async () => {
    const key = k("qg");
    const client = open(`/gateway/counter/websocket/chat?room=1&rvt-namespace=default&rvt-method=getOrCreate&rvt-runner=default&rvt-key=${key},b&rvt-crash-policy=sleep`);
    const seen = await hello(client);
    expect(seen.url).toBe(`${app.url}/chat?room=1`);
    expect(seen.key).toEqual([key, "b"]);
    expect(log.auth.at(-1)).toMatchObject({ intents: ["create", "get", "websocket"] });
    client.send(Buffer.from([1, 2, 3]));
    const [, echo] = await client.received(2);
    expect([echo.binary, [...echo.data]]).toEqual([true, [1, 2, 3]]);
    client.ws.close();
  });

  it("close codes and reasons pass both ways", async () => {
    const key = [k("close")];
    const id = await idOf(key);
    const client = open(`/gateway/${id}/websocket/`);
    await hello(client);
    client.send("close:4321:server says bye");
    expect(await within(client.closed, "close")).toEqual({ code: 4321, reason: "server says bye" });
    const second = open(`/gateway/${id}/websocket/`);
    await hello(second);
    second.ws.close(4000, "client says bye");
    await within(second.closed, "close");
    await within(
      (async () => {
        while (!log.closes.some((c) => c.key[0] === key[0] && c.code === 4000)) await delay(10);
      })(),
      "the actor to see the close",
    );
    expect(log.closes.find((c) => c.key[0] === key[0] && c.code === 4000)!.reason).toBe("client says bye");
  });

  describe("refusals happen after the upgrade, as SPEC §5 close codes", () => {
    let errorLog: ReturnType<typeof captureErrorLog>;
    beforeEach(() => {
      errorLog = captureErrorLog();
    });
    afterEach(() => errorLog.restore());

    const closeOf = async (client: WsClient) => {
      await within(client.opened, "open");
      return within(client.closed, "close");
    };

    it.each([
      ["an unknown actor id", () => "/gateway/not-an-actor-id/websocket/", RIVET, 4404, "actor_not_found"],
      ["an unknown actor name", () => "/gateway/nobody/websocket/?rvt-method=get&rvt-key=a", RIVET, 4404, "actor_not_found"],
      ["an unknown rvt-* parameter", () => "/gateway/counter/websocket/?rvt-method=get&rvt-bogus=1", RIVET, 4400, "invalid_query"],
      ["conn params that are not JSON", () => "/gateway/counter/websocket/?rvt-method=getOrCreate", ["rivet", "rivet_conn_params.%7Bnot"], 4400, "invalid_query"],
      ["conn params with a malformed escape", () => "/gateway/counter/websocket/?rvt-method=getOrCreate", ["rivet", "rivet_conn_params.%E0%A4"], 4400, "invalid_query"],
      ["an unknown encoding", () => "/gateway/counter/websocket/?rvt-method=getOrCreate", ["rivet", "rivet_encoding.xml"], 4400, "invalid_encoding"],
      ["onAuth: Unauthorized", () => "/gateway/counter/websocket/?rvt-method=getOrCreate", ["rivet", params({ deny: "unauthorized" })], 4401, "unauthorized"],
      ["onAuth: UserError", () => "/gateway/counter/websocket/?rvt-method=getOrCreate", ["rivet", params({ deny: "user" })], 4400, "my_code"],
      ["onAuth throws", () => "/gateway/counter/websocket/?rvt-method=getOrCreate", ["rivet", params({ deny: "crash" })], 1011, "internal_error"],
      ["a private actor", () => "/gateway/secret/websocket/?rvt-method=getOrCreate", RIVET, 4403, "forbidden"],
      ["no onWebSocket", () => "/gateway/bare/websocket/?rvt-method=getOrCreate", RIVET, 4404, "websocket_not_defined"],
    ])("%s → %i", async (_label, path, protocols, code, reason) => {
      const client = open(path(), protocols);
      expect(await closeOf(client)).toEqual({ code, reason });
      expect(client.ws.protocol).toBe("rivet");
    });

    it("a RivetKit connection (`handle.connect()`) → 4404 connections_not_supported", async () => {
      expect(await closeOf(open(`/gateway/counter/connect?rvt-method=getOrCreate&rvt-key=c`))).toEqual({ code: 4404, reason: "connections_not_supported" });
    });

    it("a private actor by id → 4403", async () => {
      const id = await idOf([k("secret")], "secret");
      expect(await closeOf(open(`/gateway/${id}/websocket/`))).toEqual({ code: 4403, reason: "forbidden" });
    });
  });

  it("the router's WebSocket route is untouched: it still selects `rivetkit` after the user's protocols", async () => {
    const client = new WsClient(`${app.wsUrl}/registry/actors/raw/websocket/`, actorProtocols(getOrCreate("counter", [k("router")]), { user: ["chat"] }));
    await within(client.opened, "open");
    expect(client.ws.protocol).toBe("chat");
    client.ws.close();
  });
});
