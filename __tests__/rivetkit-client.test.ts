import { createClient } from "express-actors/client";
import { gatewayRegistry, sseGates, type GatewayLog } from "./fixtures/gateway-actors";
import { rivetkitPackages, RivetkitClient, type FetchResult } from "./helpers/rivetkit-client";
import { expressVersions } from "./helpers/servers";
import { startWsApp, type WsApp } from "./helpers/ws-harness";
import { captureErrorLog, waitFor } from "./helpers/actor-harness";

// SPEC §10: frontends written against RivetKit's own client (`createClient` from `rivetkit/client`)
// work unchanged against the mount. Driven with the real client, 2.0.33 (resolve through the
// manager API, then /gateway/{id}) and the newest 2.x (the one-request query gateway).

const json = (res: FetchResult) => JSON.parse(res.body);

describe.each(expressVersions)("$label", ({ express }) => {
  describe.each(rivetkitPackages)("%s", (pkg) => {
    let app: WsApp;
    let log: GatewayLog;
    let rivet: RivetkitClient;
    let endpoint: string;
    /** 2.0.x resolves every call through the manager API; 2.1+ sends get/getOrCreate straight to the query gateway. */
    let queryGateway: boolean;
    let unique = 0;
    const key = (label: string) => `${pkg}-${label}-${++unique}`;

    beforeAll(async () => {
      const made = gatewayRegistry();
      log = made.log;
      app = await startWsApp({ express, registry: made.registry });
      endpoint = `${app.url}/registry`;
      rivet = await RivetkitClient.start(pkg, endpoint);
      queryGateway = rivet.socketMethod === "webSocket";
    }, 20_000);

    afterAll(async () => {
      rivet?.stop();
      await app?.close();
    });

    it("installs the version it claims to test", () => {
      expect(rivet.version).toBe(pkg === "rivetkit" ? "2.0.33" : "2.3.19");
    });

    it("fetch: method, path, query, headers and body reach onFetch; x-rivet-* headers do not", async () => {
      const handle = await rivet.handle({ how: "getOrCreate", name: "counter", key: [key("echo")], opts: { params: { token: "abc" } } });
      const res = await handle.fetch("/echo?x=1&y=two%2F", {
        method: "POST",
        headers: { "content-type": "application/json", "x-custom": "1" },
        body: '{"hello":"world"}',
      });
      expect(res.status).toBe(200);
      const seen = json(res);
      expect(seen.method).toBe("POST");
      expect(seen.url).toBe(`${app.url}/echo?x=1&y=two%2F`);
      expect(seen.body).toBe('{"hello":"world"}');
      const headers = Object.fromEntries(seen.headers);
      expect(headers["x-custom"]).toBe("1");
      expect(headers["content-type"]).toBe("application/json");
      expect(seen.headers.filter(([name]: [string]) => name.startsWith("x-rivet"))).toEqual([]);
      expect(seen.auth).toEqual({ params: { token: "abc" } });
    });

    it("onAuth runs on every call with source gateway, the conn params and the intents of each step", async () => {
      const k = key("auth");
      const handle = await rivet.handle({ how: "getOrCreate", name: "counter", key: [k], opts: { params: { token: "t1" } } });
      const before = log.auth.length;
      expect((await handle.fetch("/count")).status).toBe(200);
      const calls = log.auth.slice(before);
      expect(calls.every((c) => c.source === "gateway" && c.name === "counter")).toBe(true);
      if (queryGateway) {
        // One request: get-or-create and fetch at once.
        expect(calls.map((c) => [c.intents, c.params])).toEqual([[["create", "fetch", "get"], { token: "t1" }]]);
      } else {
        // PUT /actors, then the gateway: params travel on the gateway request only.
        expect(calls.map((c) => c.intents)).toEqual([["create", "get"], ["fetch", "get"]]);
        expect(calls[1].params).toEqual({ token: "t1" });
      }
      for (const call of calls) expect(Object.keys(call.headers).filter((name) => name.startsWith("x-rivet"))).toEqual([]);
    });

    it("fetch returns the actor's Response as it is: status, status text, headers, body", async () => {
      const handle = await rivet.handle({ how: "getOrCreate", name: "counter", key: [key("teapot")] });
      const res = await handle.fetch("/teapot");
      expect(res.status).toBe(418);
      expect(res.statusText).toBe("I'm a teapot");
      expect(Object.fromEntries(res.headers)["x-teapot"]).toBe("yes");
      expect(res.body).toBe("short and stout");
    });

    it("fetch carries binary bodies byte for byte", async () => {
      const handle = await rivet.handle({ how: "getOrCreate", name: "counter", key: [key("bytes")] });
      const bytes = Buffer.from([0, 1, 2, 253, 254, 255, 0x80, 0x0a]);
      const res = await handle.fetch("/bytes", { method: "PUT", body: { base64: bytes.toString("base64") } }, "base64");
      expect(Buffer.from(res.body, "base64")).toEqual(bytes);
    });

    it("fetch streams: the first event arrives before the actor has written the second", async () => {
      const handle = await rivet.handle({ how: "getOrCreate", name: "counter", key: [key("sse")] });
      const gate = key("gate");
      const stream = await handle.fetchStream(`/sse?gate=${gate}`);
      expect(stream.status).toBe(200);
      expect(Object.fromEntries(stream.headers)["content-type"]).toBe("text/event-stream");
      expect(await stream.read()).toEqual({ done: false, text: "data: one\n\n" });
      expect(sseGates.has(gate)).toBe(true);
      sseGates.get(gate)!();
      expect(await stream.read()).toEqual({ done: false, text: "data: two\n\n" });
      expect(await stream.read()).toEqual({ done: true });
    });

    it("getOrCreate with createWithInput creates the actor with that input (CBOR), once", async () => {
      const k = key("input");
      const input = { start: 5, nested: { list: [1, "two", null, true], unicode: "日本" } };
      const first = await rivet.handle({ how: "getOrCreate", name: "counter", key: [k], opts: { createWithInput: input } });
      expect(json(await first.fetch("/echo")).input).toEqual(input);
      expect(json(await first.fetch("/count", { method: "POST" }))).toEqual({ count: 6 });
      const again = await rivet.handle({ how: "getOrCreate", name: "counter", key: [k], opts: { createWithInput: { start: 100 } } });
      expect(json(await again.fetch("/count"))).toEqual({ count: 6 });
      expect(log.created.filter((c) => c.key[0] === k)).toEqual([{ name: "counter", key: [k], input }]);
    });

    it("get on a missing actor rejects with the client's own not-found error, and creates nothing", async () => {
      const k = key("missing");
      const handle = await rivet.handle({ how: "get", name: "counter", key: [k] });
      const err = await RivetkitClient.rejection(handle.resolve());
      expect([err.group, err.code]).toEqual(["actor", "not_found"]);
      if (queryGateway) {
        // One request does both steps: the refusal comes back as the Response (SPEC §5's 404), at once.
        const res = await handle.fetch("/count");
        expect(res.status).toBe(404);
        expect(json(res)).toMatchObject({ group: "actor", code: "actor_not_found" });
      } else {
        const fetchErr = await RivetkitClient.rejection(handle.fetch("/count"));
        expect(fetchErr).toMatchObject({ group: "actor", code: "not_found", isClientActorError: true });
      }
      expect(log.created.some((c) => c.key[0] === k)).toBe(false);
    });

    it("get finds an existing actor", async () => {
      const k = key("existing");
      await (await rivet.handle({ how: "getOrCreate", name: "counter", key: [k] })).fetch("/count", { method: "POST" });
      const handle = await rivet.handle({ how: "get", name: "counter", key: [k] });
      expect(json(await handle.fetch("/count"))).toEqual({ count: 1 });
    });

    it("create twice: the second rejects with actor_already_exists; the created handle works by id", async () => {
      const k = key("create");
      const created = await rivet.handle({ how: "create", name: "counter", key: [k], opts: { input: { start: 41 } } });
      expect(json(await created.fetch("/count", { method: "POST" }))).toEqual({ count: 42 });
      const err = await RivetkitClient.rejection(rivet.handle({ how: "create", name: "counter", key: [k] }));
      expect(err).toMatchObject({ group: "actor", code: "actor_already_exists", isClientActorError: true });
      expect(json(await created.fetch("/echo")).key).toEqual([k]);
    });

    it("getForId reaches the same actor; resolve gives the id", async () => {
      const k = key("byid");
      const handle = await rivet.handle({ how: "getOrCreate", name: "counter", key: [k] });
      const id = await handle.resolve();
      await handle.fetch("/count", { method: "POST" });
      const byId = await rivet.handle({ how: "getForId", name: "counter", actorId: id });
      expect(await byId.resolve()).toBe(id);
      const seen = json(await byId.fetch("/echo"));
      expect([seen.actorId, seen.key]).toEqual([id, [k]]);
      expect(json(await byId.fetch("/count"))).toEqual({ count: 1 });
    });

    const specialKeys: string[][] = [["a/b"], ["c\\d"], ["日本", "🙂"], [""], ["x", ""], ["", "y"], ["\\0"], ["/", "\\/"], [], ["org", "a/b", "c\\d", ""]];

    it.each(specialKeys.map((k) => [JSON.stringify(k), k]))("key %s round trips and is the same actor as with our own client", async (_label, special) => {
      const k = special.length === 0 ? [] : [key("k"), ...special];
      const ours = createClient(endpoint);
      const ourId = await ours.counter.getOrCreate(k).resolve();
      const handle = await rivet.handle({ how: "getOrCreate", name: "counter", key: k });
      expect(await handle.resolve()).toBe(ourId);
      const seen = json(await handle.fetch("/echo"));
      expect([seen.actorId, seen.key]).toEqual([ourId, k]);
      const byGet = json(await (await rivet.handle({ how: "get", name: "counter", key: k })).fetch("/echo"));
      expect(byGet.actorId).toBe(ourId);
      const byId = await rivet.handle({ how: "getForId", name: "counter", actorId: ourId });
      expect(json(await byId.fetch("/echo")).key).toEqual(k);
    });

    it("a key part with a comma", async () => {
      const k = [key("comma"), "a,b"];
      const ours = createClient(endpoint);
      const ourId = await ours.counter.getOrCreate(k).resolve();
      const handle = await rivet.handle({ how: "getOrCreate", name: "counter", key: k });
      // resolve() and create() send the escaped serialized key: exact in both versions.
      expect(await handle.resolve()).toBe(ourId);
      const seen = json(await handle.fetch("/echo"));
      if (queryGateway) {
        // rvt-key is the parts joined with "," and nothing escaped: the client itself cannot say which
        // actor it means, and [k, "a", "b"] is what it wrote (documented in docs/rivetkit-client.md).
        expect(seen.key).toEqual([k[0], "a", "b"]);
      } else {
        expect([seen.actorId, seen.key]).toEqual([ourId, k]);
      }
      const byId = await rivet.handle({ how: "getForId", name: "counter", actorId: ourId });
      expect(json(await byId.fetch("/echo")).key).toEqual(k);
    });

    it("websocket: opens with the rivet subprotocol, exchanges text and binary, passes close codes both ways", async () => {
      const k = key("ws");
      const handle = await rivet.handle({ how: "getOrCreate", name: "counter", key: [k], opts: { params: { token: "w" } } });
      const socket = await handle.websocket("/chat?room=1");
      expect((await socket.next("open")).protocol).toBe("rivet");
      const hello = JSON.parse((await socket.next("message")).text!);
      expect(hello.url).toBe(`${app.url}/chat?room=1`);
      expect(hello.socketUrl).toBe(`${app.wsUrl}/chat?room=1`);
      expect(hello.key).toEqual([k]);
      expect(hello.auth).toEqual({ params: { token: "w" } });
      expect(hello.headers["sec-websocket-protocol"]).toBe("rivet");
      expect(Object.keys(hello.headers).filter((name) => name.startsWith("x-rivet"))).toEqual([]);
      await socket.send("hello");
      expect((await socket.next("message", 2)).text).toBe("hello");
      await socket.send(Buffer.from([0, 1, 2, 255]));
      expect(Buffer.from((await socket.next("message", 3)).base64!, "base64")).toEqual(Buffer.from([0, 1, 2, 255]));
      await socket.send("close:4001:bye now");
      expect(await socket.next("close")).toMatchObject({ code: 4001, reason: "bye now" });

      const second = await handle.websocket();
      await second.next("message");
      await second.close(4002, "client leaves");
      await second.next("close");
      await waitFor(() => log.closes.some((c) => c.key[0] === k && c.code === 4002), "the actor to see the client's close");
      expect(log.closes.find((c) => c.key[0] === k && c.code === 4002)!.reason).toBe("client leaves");
    });

    it("websocket() with no path is the actor's /", async () => {
      const handle = await rivet.handle({ how: "getOrCreate", name: "counter", key: [key("ws-root")] });
      const socket = await handle.websocket();
      expect(JSON.parse((await socket.next("message")).text!).url).toBe(`${app.url}/`);
      await socket.close();
    });

    it("websocket by id (create, getForId) reaches the same actor", async () => {
      const k = key("ws-id");
      const created = await rivet.handle({ how: "create", name: "counter", key: [k] });
      const socket = await created.websocket("/x");
      expect(JSON.parse((await socket.next("message")).text!).key).toEqual([k]);
      await socket.close();
    });

    it("onAuth refusing the gateway call (conn params): a SPEC §5 Response and close code", async () => {
      const errorLog = captureErrorLog();
      try {
        await refusals();
      } finally {
        errorLog.restore();
      }
      // The crash is logged server-side, never shown to the client.
      expect(errorLog.lines.filter((line) => line.includes("a secret internal detail"))).toHaveLength(2);
    });

    async function refusals() {
      for (const [deny, status, group, code] of [
        ["unauthorized", 401, "auth", "unauthorized"],
        ["forbidden", 403, "auth", "forbidden"],
        ["user", 400, "user", "my_code"],
        ["crash", 500, "internal", "internal_error"],
      ] as const) {
        const handle = await rivet.handle({ how: "getOrCreate", name: "counter", key: [key(deny)], opts: { params: { deny } } });
        const res = await handle.fetch("/count");
        expect(res.status).toBe(status);
        const body = json(res);
        expect(body).toMatchObject({ group, code });
        if (deny === "user") expect(body).toEqual({ group, code, message: "custom refusal", metadata: { a: 1 } });
        if (deny === "crash") expect(body.message).toBe("Internal error");
        const socket = await handle.websocket("/");
        expect(await socket.next("close")).toMatchObject({ code: status === 500 ? 1011 : 4000 + status, reason: code });
      }
    }

    it("onAuth refusing the actor call arrives as the client's own ActorError", async () => {
      const handle = await rivet.handle({ how: "getOrCreate", name: "guarded", key: [key("guarded")] });
      const refusal = { group: "user", code: "no_create", message: "creating is not allowed here", metadata: { a: 1 } };
      const err = await RivetkitClient.rejection(handle.resolve());
      expect(err).toMatchObject(refusal);
      if (queryGateway) {
        // get-or-create and fetch are one request, refused as a whole.
        const res = await handle.fetch("/");
        expect([res.status, json(res)]).toEqual([400, refusal]);
      } else {
        expect(await RivetkitClient.rejection(handle.fetch("/"))).toMatchObject({ ...refusal, isClientActorError: true });
        expect(await RivetkitClient.rejection(handle.websocket("/"))).toMatchObject(refusal);
      }
      const create = RivetkitClient.rejection(rivet.handle({ how: "create", name: "guarded", key: [key("guarded")] }));
      expect(await create).toMatchObject({ ...refusal, isClientActorError: true });
    });

    it("an actor without onAuth stays private", async () => {
      const handle = await rivet.handle({ how: "getOrCreate", name: "secret", key: [key("secret")] });
      expect(await RivetkitClient.rejection(handle.resolve())).toMatchObject({ group: "auth", code: "forbidden" });
      if (queryGateway) expect((await handle.fetch("/")).status).toBe(403);
      else expect(await RivetkitClient.rejection(handle.fetch("/"))).toMatchObject({ group: "auth", code: "forbidden" });
    });

    it("actions and connections are refused with a clear error, at once", async () => {
      const handle = await rivet.handle({ how: "getOrCreate", name: "counter", key: [key("action")] });
      expect(await RivetkitClient.rejection(handle.action("increment", [1]))).toMatchObject({
        group: "handler",
        code: "actions_not_supported",
        isClientActorError: true,
      });
      const viaConnection = await RivetkitClient.rejection(handle.action("increment", [1], "connection"));
      expect(viaConnection.message).toContain("connections_not_supported");
    });

    it("an actor without onFetch answers 404 fetch_not_defined; without onWebSocket the socket closes 4404", async () => {
      const handle = await rivet.handle({ how: "getOrCreate", name: "bare", key: [key("bare")] });
      const res = await handle.fetch("/");
      expect(res.status).toBe(404);
      expect(json(res)).toMatchObject({ group: "handler", code: "fetch_not_defined" });
      const socket = await handle.websocket("/");
      expect(await socket.next("close")).toMatchObject({ code: 4404, reason: "websocket_not_defined" });
    });
  });
});
