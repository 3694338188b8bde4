import { encode, Encoder } from "cbor-x";
import { actorMiddleware } from "express-actors";
import { gatewayRegistry, type GatewayLog } from "./fixtures/gateway-actors";
import { captureErrorLog } from "./helpers/actor-harness";
import { expressVersions, listen } from "./helpers/servers";
import { parseQueryKey, parseSerializedKey, serializeKey } from "../lib/gateway/key";

// SPEC §10 on the wire: RivetKit's manager API and gateway as raw HTTP, every error case with
// SPEC §5's status and RivetKit's { group, code, message, metadata } body. The real client's
// view is in rivetkit-client.test.ts; the gateway's WebSockets in websocket-gateway.test.ts.

const b64 = (value: unknown) => Buffer.from(encode(value)).toString("base64");
const b64url = (value: unknown) => Buffer.from(encode(value)).toString("base64url");

type Body = Record<string, any>;

async function call(url: string, init: RequestInit & { json?: unknown } = {}) {
  const { json, ...rest } = init;
  const res = await fetch(url, json === undefined ? rest : { ...rest, body: JSON.stringify(json), headers: { "content-type": "application/json", ...rest.headers } });
  const text = await res.text();
  let body: Body | undefined;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, headers: res.headers, text, body: body as Body };
}

/** RivetKit's error shape, with SPEC §5's status, as JSON. */
function expectGatewayError(res: Awaited<ReturnType<typeof call>>, status: number, group: string, code: string) {
  expect({ status: res.status, group: res.body?.group, code: res.body?.code }).toEqual({ status, group, code });
  expect(res.headers.get("content-type")).toMatch(/^application\/json\b/);
  expect(typeof res.body.message).toBe("string");
  expect(Object.keys(res.body).sort()).toEqual(["code", "group", "message", "metadata"]);
}

describe("serialized keys (the client's form, escapes included)", () => {
  it.each<[string[], string]>([
    [[], "/"],
    [[""], "\\0"],
    [["a"], "a"],
    [["a/b"], "a\\/b"],
    [["c\\d"], "c\\\\d"],
    [["\\0"], "\\\\0"],
    [["org", "a/b", "c\\d", ""], "org/a\\/b/c\\\\d/\\0"],
    [["", ""], "\\0/\\0"],
    [["日本", "a,b"], "日本/a,b"],
  ])("%j ↔ %j", (key, text) => {
    expect(serializeKey(key)).toBe(text);
    expect(parseSerializedKey(text)).toEqual(key);
  });

  it.each(["", "a//b", "/a", "a/", "\\x", "a\\", "\\0x", "x\\0"])("refuses %j, which the client never writes", (text) => {
    expect(() => parseSerializedKey(text)).toThrow(expect.objectContaining({ code: "invalid_query" }));
  });

  it("reads rvt-key as the 2.3 client writes it: joined with commas, nothing escaped", () => {
    expect(parseQueryKey(undefined)).toEqual([]);
    expect(parseQueryKey("")).toEqual([""]);
    expect(parseQueryKey("org,a/b,c\\d,")).toEqual(["org", "a/b", "c\\d", ""]);
  });
});

describe.each(expressVersions)("the gateway on $label", ({ express }) => {
  let base: string;
  let log: GatewayLog;
  let close: () => Promise<void>;
  let made: ReturnType<typeof gatewayRegistry>;
  let unique = 0;
  const k = (label: string) => `${label}-${++unique}`;

  beforeAll(async () => {
    made = gatewayRegistry();
    log = made.log;
    const app = express();
    app.use("/parsed", express.json(), actorMiddleware(made.registry));
    app.use("/registry", actorMiddleware(made.registry, { maxBodySize: 1024, cors: { origin: "http://app.test", credentials: true } }));
    app.use((_req: unknown, res: { status(n: number): { send(t: string): void } }) => res.status(404).send("the app's own 404"));
    const server = await listen(app);
    base = `${server.url}/registry`;
    close = server.close;
  });

  afterAll(async () => {
    await close();
    await made.registry.shutdown();
  });

  const put = (body: unknown, query = "?namespace=default") => call(`${base}/actors${query}`, { method: "PUT", json: body });
  const idOf = async (key: string[]) => (await put({ name: "counter", key: serializeKey(key) })).body.actor.actor_id as string;

  describe("GET /metadata", () => {
    it("answers what the client awaits before any call, naming only public actors", async () => {
      const res = await call(`${base}/metadata?namespace=default`);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        runtime: "express-actors",
        runner: { kind: { normal: {} } },
        actorNames: { counter: { metadata: {} }, bare: { metadata: {} }, guarded: { metadata: {} } },
      });
    });
  });

  describe("PUT /actors (get-or-create)", () => {
    it("creates once, then finds; answers the actor as RivetKit describes it", async () => {
      const key = [k("put"), "a/b", ""];
      const body = { name: "counter", key: serializeKey(key), runner_name_selector: "default", crash_policy: "sleep" };
      const first = await put(body);
      expect(first.status).toBe(200);
      expect(first.body).toEqual({
        created: true,
        actor: {
          actor_id: expect.any(String),
          name: "counter",
          key: serializeKey(key),
          namespace_id: "default",
          runner_name_selector: "default",
          create_ts: expect.any(Number),
          connectable_ts: null,
          destroy_ts: null,
          sleep_ts: null,
          start_ts: null,
        },
      });
      const second = await put(body, "?namespace=elsewhere");
      expect(second.body).toEqual({ ...first.body, created: false });
      // The record exists; the actor starts (onCreate) with its first request.
      expect(log.created.filter((c) => c.key[0] === key[0])).toEqual([]);
      expect((await call(`${base}/gateway/${first.body.actor.actor_id}/request/count`)).body).toEqual({ count: 0 });
      expect(log.created.filter((c) => c.key[0] === key[0])).toEqual([{ name: "counter", key, input: null }]);
    });

    it("creation input is base64 CBOR, handed to createState and onCreate", async () => {
      const key = [k("input")];
      const input = { start: 7, list: [1, "two", null, false, 1.5], nested: { deep: "日本" } };
      expect((await put({ name: "counter", key: serializeKey(key), input: b64(input) })).status).toBe(200);
      const id = await idOf(key);
      expect((await call(`${base}/gateway/${id}/request/count`)).body).toEqual({ count: 7 });
      expect(log.created.find((c) => c.key[0] === key[0])!.input).toEqual(input);
    });

    it("runs onAuth first, with source gateway and intents get and create; x-rivet-* headers hidden", async () => {
      const before = log.auth.length;
      await call(`${base}/actors`, {
        method: "PUT",
        json: { name: "counter", key: k("auth") },
        headers: { authorization: "Bearer tok", "x-rivet-token": "tok", "x-rivetkit-query": "{}" },
      });
      const [authCall] = log.auth.slice(before);
      expect(authCall).toMatchObject({ name: "counter", source: "gateway", intents: ["create", "get"], params: undefined, method: "PUT" });
      expect(authCall.headers.authorization).toBe("Bearer tok");
      expect(Object.keys(authCall.headers).filter((name) => name.startsWith("x-rivet"))).toEqual([]);
    });

    it("a refusing onAuth creates nothing", async () => {
      const key = k("guarded");
      const res = await put({ name: "guarded", key });
      expectGatewayError(res, 400, "user", "no_create");
      expect(res.body).toMatchObject({ message: "creating is not allowed here", metadata: { a: 1 } });
      const found = await call(`${base}/actors?name=guarded&key=${encodeURIComponent(key)}`);
      expect(found.body).toEqual({ actors: [] });
    });

    it("an actor without onAuth is private: 403 before anything is created", async () => {
      expectGatewayError(await put({ name: "secret", key: k("secret") }), 403, "auth", "forbidden");
    });

    it("an unknown actor name is 404, never 500", async () => {
      expectGatewayError(await put({ name: "doesNotExist", key: "x" }), 404, "actor", "actor_not_found");
    });

    it("a body parser in front: the parsed body is used", async () => {
      const res = await call(`${base.replace("/registry", "/parsed")}/actors`, { method: "PUT", json: { name: "counter", key: k("parsed") } });
      expect(res.status).toBe(200);
      expect(res.body.created).toBe(true);
    });

    it.each<[string, string | object, string, RegExp]>([
      ["malformed JSON", "{not json", "invalid_request", /not valid JSON/],
      ["an empty body", "", "invalid_request", /not valid JSON/],
      ["a JSON array", [], "invalid_request", /JSON object/],
      ["no name", { key: "a" }, "invalid_query", /name/],
      ["a key that is not a string", { name: "counter", key: ["a"] }, "invalid_query", /serialized key string/],
      ["a key not in the serialized form", { name: "counter", key: "a//b" }, "invalid_query", /serialized form/],
      ["input that is not base64", { name: "counter", key: "x", input: "not base64!" }, "invalid_query", /base64/],
      ["input that is not CBOR", { name: "counter", key: "x", input: Buffer.from([0x9a, 0x7f]).toString("base64") }, "invalid_query", /CBOR/],
      ["input with a Date", { name: "counter", key: "x", input: b64({ when: new Date(0) }) }, "invalid_query", /input\.when is a Date/],
      ["input with a BigInt", { name: "counter", key: "x", input: b64({ n: 10n ** 30n }) }, "invalid_query", /input\.n is bigint/],
      ["input with a number key", { name: "counter", key: "x", input: b64(new Map([[1, "a"]])) }, "invalid_query", /number key/],
      ["input with bytes", { name: "counter", key: "x", input: b64({ b: new Uint8Array([1]) }) }, "invalid_query", /input\.b is a Uint8Array/],
      ["input with undefined in a list", { name: "counter", key: "x", input: b64([1, undefined]) }, "invalid_query", /input\[1\] is undefined/],
      ["input with a cycle", { name: "counter", key: "x", input: Buffer.from("d81c81d81d00", "hex").toString("base64") }, "invalid_query", /circular/],
      ["input nested too deep", { name: "counter", key: "x", input: b64(JSON.parse("[".repeat(70) + "]".repeat(70))) }, "invalid_query", /deeper/],
    ])("%s → 400 with a clear message", async (_label, body, code, message) => {
      const res = await call(`${base}/actors`, {
        method: "PUT",
        body: typeof body === "string" ? body : JSON.stringify(body),
        headers: { "content-type": "application/json" },
      });
      expectGatewayError(res, 400, "request", code);
      expect(res.body.message).toMatch(message);
    });

    it("input with shared references is refused, not walked exponentially", async () => {
      // Each level refers twice to the one below (CBOR tags 28/29): 2^60 paths through 60 arrays.
      let shared: unknown[] = [0];
      for (let level = 0; level < 60; level++) shared = [shared, shared];
      const input = Buffer.from(new Encoder({ structuredClone: true }).encode(shared)).toString("base64");
      const res = await put({ name: "counter", key: "x", input });
      expectGatewayError(res, 400, "request", "invalid_query");
      expect(res.body.message).toMatch(/shared or circular reference/);
    });

    it("a body over maxBodySize is 413 in the gateway's shape", async () => {
      const res = await put({ name: "counter", key: "x", input: "A".repeat(2000) });
      expectGatewayError(res, 413, "request", "payload_too_large");
    });
  });

  describe("POST /actors (create)", () => {
    it("creates, then refuses the same key with 409 actor_already_exists", async () => {
      const key = serializeKey([k("post"), "\\"]);
      const first = await call(`${base}/actors?namespace=default`, { method: "POST", json: { name: "counter", key, input: b64({ start: 3 }) } });
      expect(first.status).toBe(200);
      expect(first.body).toEqual({ actor: expect.objectContaining({ name: "counter", key }) });
      expect(first.body.created).toBeUndefined();
      const again = await call(`${base}/actors`, { method: "POST", json: { name: "counter", key } });
      expectGatewayError(again, 409, "actor", "actor_already_exists");
    });

    it("runs onAuth with the create intent only", async () => {
      const before = log.auth.length;
      await call(`${base}/actors`, { method: "POST", json: { name: "counter", key: k("post-auth") } });
      expect(log.auth.slice(before).map((c) => c.intents)).toEqual([["create"]]);
    });
  });

  describe("GET /actors", () => {
    it("by name and key: the actor, or an empty list the client reports as not found", async () => {
      const key = [k("get"), "a/b"];
      const id = await idOf(key);
      const found = await call(`${base}/actors?name=counter&key=${encodeURIComponent(serializeKey(key))}&namespace=default`);
      expect(found.body.actors).toEqual([expect.objectContaining({ actor_id: id, name: "counter", key: serializeKey(key) })]);
      const before = log.auth.length;
      const missing = await call(`${base}/actors?name=counter&key=${k("nobody")}`);
      expect([missing.status, missing.body]).toEqual([200, { actors: [] }]);
      expect(log.auth.slice(before).map((c) => c.intents)).toEqual([["get"]]);
    });

    it("by id: name and key included; an unknown id is an empty list", async () => {
      const key = [k("byid"), ""];
      const id = await idOf(key);
      const found = await call(`${base}/actors?actor_ids=${id}&namespace=default`);
      expect(found.body.actors).toEqual([expect.objectContaining({ actor_id: id, name: "counter", key: serializeKey(key) })]);
      expect((await call(`${base}/actors?actor_ids=nope`)).body).toEqual({ actors: [] });
      expect((await call(`${base}/actors?actor_ids=${id}&name=bare`)).body).toEqual({ actors: [] });
    });

    it("by id of a private actor: 403", async () => {
      const id = await made.registry.createServerClient().secret.getOrCreate([k("private")]).resolve();
      expectGatewayError(await call(`${base}/actors?actor_ids=${id}`), 403, "auth", "forbidden");
    });

    it.each([
      ["no name", "?key=a", 400, "request", "invalid_query"],
      ["no key", "?name=counter", 400, "request", "invalid_query"],
      ["a bad key", "?name=counter&key=a%5C", 400, "request", "invalid_query"],
      ["name twice", "?name=counter&name=bare&key=a", 400, "request", "invalid_query"],
      ["ids and a key", "?actor_ids=a&key=b", 400, "request", "invalid_query"],
      ["too many ids", "?actor_ids=" + Array.from({ length: 33 }, (_, i) => `id${i}`).join(","), 400, "request", "invalid_query"],
      ["an unknown name", "?name=doesNotExist&key=a", 404, "actor", "actor_not_found"],
    ])("%s → %i", async (_label, query, status, group, code) => {
      expectGatewayError(await call(`${base}/actors${query}`), status, group, code);
    });
  });

  describe("ANY /gateway/{actorId}/request/{path}", () => {
    it("reaches onFetch with the path and query below /request, any method, the body streamed", async () => {
      const id = await idOf([k("fetch")]);
      const res = await call(`${base}/gateway/${id}/request/rooms/a%20b?x=1&y=%2F`, {
        method: "PATCH",
        body: "patch body",
        headers: { "x-custom": "kept", "x-rivet-conn-params": '{"token":"p"}', "x-rivet-token": "t", "x-rivet-internal-original-request-url": "http://evil/", "x-rivetkit-query": "{}" },
      });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ method: "PATCH", url: `${base.replace("/registry", "")}/rooms/a%20b?x=1&y=%2F`, body: "patch body", auth: { params: { token: "p" } } });
      const headers = Object.fromEntries(res.body.headers);
      expect(headers["x-custom"]).toBe("kept");
      expect(Object.keys(headers).filter((name) => name.startsWith("x-rivet"))).toEqual([]);
    });

    it("runs onAuth with source gateway and intents get and fetch, before the handler", async () => {
      const id = await idOf([k("gw-auth")]);
      const before = log.auth.length;
      await call(`${base}/gateway/${id}/request/`);
      expect(log.auth.slice(before).map((c) => [c.source, c.intents])).toEqual([["gateway", ["fetch", "get"]]]);
    });

    it("`/request` alone is the actor's `/`; `{id}@{token}` addresses the same actor", async () => {
      const id = await idOf([k("root")]);
      expect((await call(`${base}/gateway/${id}/request`)).body.url).toMatch(/:\d+\/$/);
      expect((await call(`${base}/gateway/${encodeURIComponent(id)}@some-token/request/x?q=1`)).body.url).toMatch(/:\d+\/x\?q=1$/);
    });

    it("passes the actor's own statuses, headers and errors through", async () => {
      const id = await idOf([k("teapot")]);
      const teapot = await call(`${base}/gateway/${id}/request/teapot`);
      expect([teapot.status, teapot.headers.get("x-teapot"), teapot.text]).toEqual([418, "yes", "short and stout"]);
      const user = await call(`${base}/gateway/${id}/request/user-error`);
      expectGatewayError(user, 400, "user", "my_code");
      expect(user.body).toEqual({ group: "user", code: "my_code", message: "user-visible failure", metadata: { a: 1 } });
      const errorLog = captureErrorLog();
      try {
        const crash = await call(`${base}/gateway/${id}/request/crash`);
        expectGatewayError(crash, 500, "internal", "internal_error");
        expect(crash.text).not.toContain("secret");
      } finally {
        errorLog.restore();
      }
    });

    it.each([
      ["an unknown actor id", "/gateway/not-an-actor-id/request/count", 404, "actor", "actor_not_found"],
      ["an empty id", "/gateway//request/count", 400, "request", "invalid_query"],
      ["a malformed escape in the id", "/gateway/%E0%A4/request/count", 400, "request", "invalid_query"],
      ["a plain GET on the socket route", "/gateway/x/websocket/", 426, "request", "upgrade_required"],
    ])("%s → %i", async (_label, path, status, group, code) => {
      expectGatewayError(await call(base + path), status, group, code);
    });

    it("malformed x-rivet-conn-params → 400 invalid_query", async () => {
      const id = await idOf([k("params")]);
      const res = await call(`${base}/gateway/${id}/request/`, { headers: { "x-rivet-conn-params": "{not json" } });
      expectGatewayError(res, 400, "request", "invalid_query");
      expect(res.body.message).toMatch(/x-rivet-conn-params/);
    });

    it("onAuth refusals, private actors and missing handlers", async () => {
      const id = await idOf([k("refused")]);
      const refused = await call(`${base}/gateway/${id}/request/`, { headers: { "x-rivet-conn-params": '{"deny":"unauthorized"}' } });
      expectGatewayError(refused, 401, "auth", "unauthorized");
      expect(refused.body.message).toBe("bad token");
      const server = made.registry.createServerClient();
      const secretId = await server.secret.getOrCreate([k("secret")]).resolve();
      expectGatewayError(await call(`${base}/gateway/${secretId}/request/`), 403, "auth", "forbidden");
      const bareId = await server.bare.getOrCreate([k("bare")]).resolve();
      expectGatewayError(await call(`${base}/gateway/${bareId}/request/`), 404, "handler", "fetch_not_defined");
    });

    it("a body over maxBodySize is 413 in the gateway's shape", async () => {
      const id = await idOf([k("big")]);
      expectGatewayError(await call(`${base}/gateway/${id}/request/`, { method: "POST", body: "x".repeat(5000) }), 413, "request", "payload_too_large");
    });

    it("RivetKit actions get a clear 404, not the app's page", async () => {
      const res = await call(`${base}/gateway/some-id/action/increment`, { method: "POST", body: "x" });
      expectGatewayError(res, 404, "handler", "actions_not_supported");
      expectGatewayError(await call(`${base}/gateway/counter/connect?rvt-method=get`), 404, "handler", "connections_not_supported");
    });

    it("other paths under /gateway go on to the app", async () => {
      const res = await call(`${base}/gateway/some-id/count`);
      expect([res.status, res.text]).toEqual([404, "the app's own 404"]);
    });
  });

  describe("the query gateway /gateway/{name}/request/{path}?rvt-*", () => {
    it("gets-or-creates by name and key in one request; rvt-* parameters are stripped, the rest kept byte for byte", async () => {
      const key = k("qg");
      const res = await call(
        `${base}/gateway/counter/request/p/q?b=%2F&a=1&&rvt-namespace=default&c&rvt-method=getOrCreate&rvt-runner=default&rvt-key=${key},x%2Fy,&rvt-input=${b64url({ start: 2 })}&rvt-crash-policy=sleep&z=%zz`,
      );
      expect(res.status).toBe(200);
      expect(res.body.url).toMatch(/:\d+\/p\/q\?b=%2F&a=1&&c&z=%zz$/);
      expect(res.body.key).toEqual([key, "x/y", ""]);
      expect(res.body.input).toEqual({ start: 2 });
      expect(log.auth.at(-1)).toMatchObject({ source: "gateway", intents: ["create", "fetch", "get"] });
    });

    it("without other query parameters the actor's URL has no query; rvt-key absent is the empty key", async () => {
      const res = await call(`${base}/gateway/counter/request/plain?rvt-namespace=default&rvt-method=getOrCreate&rvt-runner=default`);
      expect(res.body.url).toMatch(/:\d+\/plain$/);
      expect(res.body.key).toEqual([]);
    });

    it("rvt-method=get: found, or 404 actor_not_found at once (not RivetKit's retried not_found)", async () => {
      const key = k("qg-get");
      await idOf([key]);
      expect((await call(`${base}/gateway/counter/request/count?rvt-method=get&rvt-key=${key}`)).body).toEqual({ count: 0 });
      expectGatewayError(await call(`${base}/gateway/counter/request/count?rvt-method=get&rvt-key=${k("none")}`), 404, "actor", "actor_not_found");
      expect(log.auth.at(-1)).toMatchObject({ intents: ["fetch", "get"] });
    });

    it.each([
      ["no rvt-method", "?rvt-namespace=default", 400, "invalid_query", /rvt-method/],
      ["an unknown rvt-method", "?rvt-method=create&rvt-key=a", 400, "invalid_query", /rvt-method/],
      ["an unknown rvt-* parameter", "?rvt-method=get&rvt-key=a&rvt-extra=1", 400, "invalid_query", /rvt-extra/],
      ["rvt-method twice", "?rvt-method=get&rvt-method=getOrCreate", 400, "invalid_query", /twice/],
      ["rvt-input with get", `?rvt-method=get&rvt-input=${b64url(1)}`, 400, "invalid_query", /rvt-input/],
      ["rvt-input not base64url", "?rvt-method=getOrCreate&rvt-input=a+b", 400, "invalid_query", /base64url/],
      ["rvt-input not JSON data", `?rvt-method=getOrCreate&rvt-input=${b64url({ d: new Date(0) })}`, 400, "invalid_query", /Date/],
      ["a malformed rvt-key escape", "?rvt-method=get&rvt-key=%E0%A4", 400, "invalid_query", /rvt-key/],
    ])("%s → %i", async (_label, query, status, code, message) => {
      const res = await call(`${base}/gateway/counter/request/${query}`);
      expectGatewayError(res, status, "request", code);
      expect(res.body.message).toMatch(message);
    });

    it("an unknown actor name → 404", async () => {
      expectGatewayError(await call(`${base}/gateway/nobody/request/?rvt-method=getOrCreate&rvt-key=a`), 404, "actor", "actor_not_found");
    });
  });

  describe("CORS (the router's cors option)", () => {
    it("answers the browser's preflight for PUT /actors and marks the answer", async () => {
      const preflight = await call(`${base}/actors`, {
        method: "OPTIONS",
        headers: { origin: "http://app.test", "access-control-request-method": "PUT", "access-control-request-headers": "content-type" },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get("access-control-allow-origin")).toBe("http://app.test");
      expect(preflight.headers.get("access-control-allow-credentials")).toBe("true");
      const res = await call(`${base}/actors`, { method: "PUT", json: { name: "counter", key: k("cors") }, headers: { origin: "http://app.test" } });
      expect(res.status).toBe(200);
      expect(res.headers.get("access-control-allow-origin")).toBe("http://app.test");
    });
  });

  it("the router's own routes keep SPEC §5's error body", async () => {
    const res = await call(`${base}/actors/raw/http/`, { headers: { "x-rivetkit-actor-query": JSON.stringify({ getForKey: { name: "counter", key: ["nobody"] } }) } });
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ code: "actor_not_found", message: expect.any(String) });
  });
});
