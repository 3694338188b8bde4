import * as http from "node:http";
import request from "supertest";
import { actor, actorMiddleware, forwardToActor, forwardWebSocketToActor, setup } from "express-actors";
import { expressVersions } from "./helpers/servers";
import { expectWireError, QUERY, RAW } from "./helpers/wire";

// SPEC §11 limits on the HTTP side: the query header, conn params and key sizes, with their
// defaults and as options, answered with SPEC §5's 400 invalid_query before any actor is touched.

const PARAMS = "X-RivetKit-Conn-Params";
let created = 0;

const echo = actor({
  createState: () => {
    created++;
    return {};
  },
  onAuth: (_args, params) => params ?? null,
  onFetch: (c, _req, { auth }) => Response.json({ key: c.key, auth }),
});

/** A getOrCreate query for `key`, padded through its input to exactly `length` characters. */
function queryOfLength(length: number, key: string[] = ["pad"]): string {
  const bare = JSON.stringify({ getOrCreateForKey: { name: "echo", key, input: "" } });
  const text = JSON.stringify({ getOrCreateForKey: { name: "echo", key, input: "x".repeat(length - bare.length) } });
  expect(text).toHaveLength(length);
  return text;
}

/** Conn params of exactly `length` characters. */
function paramsOfLength(length: number): string {
  const text = JSON.stringify({ pad: "x".repeat(length - '{"pad":""}'.length) });
  expect(text).toHaveLength(length);
  return text;
}

const query = (key: string[]) => JSON.stringify({ getOrCreateForKey: { name: "echo", key } });
const parts = (n: number) => Array.from({ length: n }, (_, i) => `p${i}`);

describe.each(expressVersions)("limits on the HTTP routes on $label", ({ express }) => {
  const registry = setup({ use: { echo } });
  const app = express();
  app.use("/registry", actorMiddleware(registry));
  app.use(
    "/strict",
    actorMiddleware(registry, { maxQuerySize: 200, maxConnParamsSize: 50, maxKeyParts: 2, maxKeyPartLength: 8 }),
  );
  app.use("/rooms/:room", forwardToActor(registry, { name: "echo", key: (req) => req.params.room.split("."), maxKeyParts: 3, maxKeyPartLength: 5 }));
  app.use("/default-rooms/:room", forwardToActor(registry, { name: "echo", key: (req) => req.params.room.split(".") }));
  // Node's own header limit (16 KiB by default) would answer 431 first; an app that raises it meets ours.
  const server = http.createServer({ maxHeaderSize: 256 * 1024 }, app);
  afterAll(async () => {
    server.close();
    await registry.shutdown();
  });

  const get = (path: string, headers: Record<string, string>) => request(server).get(path).set(headers);

  /** Refused with 400 invalid_query and no actor created. */
  async function expectRefused(path: string, headers: Record<string, string>, message: RegExp) {
    const before = created;
    const res = await get(path, headers);
    expectWireError(res, 400, "invalid_query");
    expect(res.body.message).toMatch(message);
    expect(created).toBe(before);
  }

  it("accepts a query of 16 KiB by default and refuses one character more", async () => {
    expect((await get(`${RAW}/`, { [QUERY]: queryOfLength(16 * 1024) })).status).toBe(200);
    await expectRefused(`${RAW}/`, { [QUERY]: queryOfLength(16 * 1024 + 1) }, /16385 characters long; the limit is 16384/);
  });

  it("applies maxQuerySize to the alias header and to POST actors/resolve too", async () => {
    expect((await get("/strict/actors/raw/http/", { "X-RivetKit-Query": queryOfLength(200) })).status).toBe(200);
    await expectRefused("/strict/actors/raw/http/", { "X-RivetKit-Query": queryOfLength(201) }, /the limit is 200/);
    const res = await request(server).post("/strict/actors/resolve").set(QUERY, queryOfLength(201));
    expectWireError(res, 400, "invalid_query");
  });

  it("accepts conn params of 16 KiB by default and refuses one character more", async () => {
    const ok = await get(`${RAW}/`, { [QUERY]: query(["params"]), [PARAMS]: paramsOfLength(16 * 1024) });
    expect(ok.status).toBe(200);
    await expectRefused(`${RAW}/`, { [QUERY]: query(["params"]), [PARAMS]: paramsOfLength(16 * 1024 + 1) }, /Conn-Params is 16385 characters/);
    expect((await get("/strict/actors/raw/http/", { [QUERY]: query(["a"]), [PARAMS]: paramsOfLength(50) })).status).toBe(200);
    await expectRefused("/strict/actors/raw/http/", { [QUERY]: query(["a"]), [PARAMS]: paramsOfLength(51) }, /the limit is 50/);
  });

  it("accepts 64 key parts of 1024 characters by default, not 65 parts nor 1025 characters", async () => {
    expect((await get(`${RAW}/`, { [QUERY]: query(parts(64)) })).status).toBe(200);
    expect((await get(`${RAW}/`, { [QUERY]: query(["k".repeat(1024)]) })).status).toBe(200);
    await expectRefused(`${RAW}/`, { [QUERY]: query(parts(65)) }, /65 parts; the limit is 64/);
    await expectRefused(`${RAW}/`, { [QUERY]: query(["k".repeat(1025)]) }, /1025 characters long; the limit is 1024/);
  });

  it("applies maxKeyParts and maxKeyPartLength as set, on every query kind", async () => {
    expect((await get("/strict/actors/raw/http/", { [QUERY]: query(["12345678", "b"]) })).status).toBe(200);
    await expectRefused("/strict/actors/raw/http/", { [QUERY]: query(["a", "b", "c"]) }, /3 parts; the limit is 2/);
    await expectRefused("/strict/actors/raw/http/", { [QUERY]: query(["123456789"]) }, /9 characters long; the limit is 8/);
    const get3 = JSON.stringify({ getForKey: { name: "echo", key: ["a", "b", "c"] } });
    await expectRefused("/strict/actors/raw/http/", { [QUERY]: get3 }, /the limit is 2/);
  });

  it("checks the key limits of each route even for a query text another route already parsed", async () => {
    // Parsed queries are cached by their text: the strict route must not take the lenient one's verdict.
    const text = query(["a", "b", "c"]);
    expect((await get(`${RAW}/`, { [QUERY]: text })).status).toBe(200);
    await expectRefused("/strict/actors/raw/http/", { [QUERY]: text }, /the limit is 2/);
  });

  it("applies the key and conn params limits to the RivetKit gateway's routes too (SPEC §10)", async () => {
    /** Refused with 400 invalid_query, in the gateway's error shape. */
    const expectGatewayRefusal = async (res: request.Response, message: RegExp) => {
      expect({ status: res.status, group: res.body.group, code: res.body.code }).toEqual({ status: 400, group: expect.any(String), code: "invalid_query" });
      expect(res.body.message).toMatch(message);
    };
    const put = (key: string) => request(server).put("/strict/actors").send({ name: "echo", key });
    expect((await put("gw/12345678")).status).toBe(200);
    await expectGatewayRefusal(await put("gw/b/c"), /3 parts; the limit is 2/);
    await expectGatewayRefusal(await request(server).get("/strict/actors?name=echo&key=gw%2F123456789"), /9 characters long; the limit is 8/);
    const gateway = (key: string) => `/strict/gateway/echo/request/x?rvt-method=getOrCreate&rvt-key=${key}`;
    expect((await request(server).get(gateway("gw,b"))).status).toBe(200);
    await expectGatewayRefusal(await request(server).get(gateway("gw,b,c")), /the limit is 2/);
    expect((await request(server).get(gateway("gw,b")).set("x-rivet-conn-params", paramsOfLength(50))).status).toBe(200);
    await expectGatewayRefusal(await request(server).get(gateway("gw,b")).set("x-rivet-conn-params", paramsOfLength(51)), /the limit is 50/);
  });

  it("limits the keys forwardToActor builds: its options, else the defaults", async () => {
    expect((await request(server).get("/rooms/a.b.c/x")).body).toEqual({ key: ["a", "b", "c"], auth: null });
    await expectRefused("/rooms/a.b.c.d/x", {}, /4 parts; the limit is 3/);
    await expectRefused("/rooms/abcdef/x", {}, /6 characters long; the limit is 5/);
    expect((await request(server).get(`/default-rooms/${parts(64).join(".")}/x`)).status).toBe(200);
    await expectRefused(`/default-rooms/${parts(65).join(".")}/x`, {}, /the limit is 64/);
  });
});

describe("limit options", () => {
  const registry = setup({ use: { echo } });
  afterAll(() => registry.shutdown());

  it.each([0, -1, 1.5, NaN, "10", null])("refuse %p at setup, naming the option", (value) => {
    expect(() => actorMiddleware(registry, { maxQuerySize: value as number })).toThrow(
      "actorMiddleware(): maxQuerySize must be a positive integer or Infinity",
    );
    expect(() => forwardToActor(registry, { name: "echo", key: () => "a", maxKeyParts: value as number })).toThrow(
      "forwardToActor(): maxKeyParts must be a positive integer or Infinity",
    );
    expect(() => forwardWebSocketToActor(registry, { name: "echo", key: () => "a", maxSocketsPerActor: value as number })).toThrow(
      "forwardWebSocketToActor(): maxSocketsPerActor must be a positive integer or Infinity",
    );
  });

  it("take Infinity for no limit", async () => {
    const express = expressVersions[0].express;
    const app = express();
    app.use("/registry", actorMiddleware(registry, { maxKeyParts: Infinity }));
    expect((await request(app).get(`${RAW}/`).set(QUERY, query(parts(500)))).status).toBe(200);
  });
});
