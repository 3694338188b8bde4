import request from "supertest";
import { actor, actorMiddleware, Forbidden, setup, Unauthorized } from "express-actors";
import { expressVersions } from "./helpers/servers";
import { expectWireError, q, QUERY, RAW } from "./helpers/wire";

// SPEC §4 through the router: when onAuth runs, what it receives, and where its result goes.

interface AuthCall {
  url: string;
  method: string;
  headers: Record<string, string>;
  intents: string[];
  params: unknown;
  secondArg: unknown;
  isSet: boolean;
}

const calls: AuthCall[] = [];
const created: string[][] = [];

/** Token from conn params, else the Authorization header; "deny" is forbidden, none is unauthorized. */
const secured = actor({
  state: { visits: 0 },
  onCreate: (c) => {
    created.push(c.key);
  },
  onAuth: async ({ request, intents, params }, secondArg) => {
    calls.push({
      url: request.url,
      method: request.method,
      headers: Object.fromEntries(request.headers),
      intents: [...intents].sort(),
      params,
      secondArg,
      isSet: intents instanceof Set,
    });
    const token = (params as { token?: string } | undefined)?.token ?? request.headers.get("authorization");
    if (token === "deny") throw new Forbidden();
    if (!token) throw new Unauthorized();
    if (token === "public") return undefined;
    return { user: token, roles: ["reader"] };
  },
  onFetch: async (c, req, { auth }) => {
    c.state.visits++;
    return Response.json({
      auth: auth === undefined ? "<undefined>" : auth,
      headers: Object.fromEntries(req.headers),
      body: await req.text(),
    });
  },
});

/** Returns whatever JSON value the `x-auth` header holds, to check every kind arrives intact. */
const echoAuth = actor({
  onAuth: ({ request }) => JSON.parse(request.headers.get("x-auth") ?? "null"),
  onFetch: (_c, _req, { auth }) => Response.json({ auth: auth === undefined ? "<undefined>" : auth }),
});

describe.each(expressVersions)("onAuth on $label", ({ express }) => {
  const registry = setup({ use: { secured, echoAuth } });
  const app = express();
  app.use("/registry", actorMiddleware(registry));
  afterAll(() => registry.shutdown());
  beforeEach(() => {
    calls.length = 0;
    created.length = 0;
  });

  it("runs before creation: a refused getOrCreate creates nothing", async () => {
    const key = ["refused-" + Date.now()];
    expectWireError(await request(app).get(RAW + "/").set(QUERY, q.getOrCreate("secured", key)), 401, "unauthorized");
    const denied = await request(app)
      .get(RAW + "/")
      .set(QUERY, q.getOrCreate("secured", key))
      .set("X-RivetKit-Conn-Params", JSON.stringify({ token: "deny" }));
    expectWireError(denied, 403, "forbidden");
    expectWireError(await request(app).get(RAW + "/").set(QUERY, q.create("secured", key)), 401, "unauthorized");

    expect(calls).toHaveLength(3);
    expect(created).toEqual([]);
    const server = registry.createServerClient();
    await expect(server.secured.get(key).resolve()).rejects.toMatchObject({ code: "actor_not_found" });
    const res = await server.secured.get(key).fetch("/");
    expect(res.status).toBe(404);
  });

  it("runs before lookup: an unknown key is refused, not reported missing, when onAuth refuses", async () => {
    expectWireError(await request(app).get(RAW + "/").set(QUERY, q.get("secured", ["nobody"])), 401, "unauthorized");
    expectWireError(
      await request(app).get(RAW + "/").set(QUERY, q.get("secured", ["nobody"])).set("authorization", "t"),
      404,
      "actor_not_found",
    );
  });

  it("receives the real path URL, method and headers with every X-RivetKit-* header stripped", async () => {
    const res = await request(app)
      .post(RAW + "//rooms/a%20b?x=1&y=two")
      .set(QUERY, q.getOrCreate("secured", ["headers"]))
      .set("X-RivetKit-Encoding", "json")
      .set("X-RivetKit-Conn-Params", JSON.stringify({ token: "alice" }))
      .set("X-RivetKit-Auth-Data", JSON.stringify({ user: "mallory" }))
      .set("x-rivetkit-anything", "1")
      .set("Authorization", "Bearer xyz")
      .set("X-Custom", "kept")
      .set("Content-Type", "text/plain")
      .send("hello body");
    expect(res.status).toBe(200);
    expect(calls).toHaveLength(1);
    const [call] = calls;
    expect(call.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/rooms\/a%20b\?x=1&y=two$/);
    expect(call.method).toBe("POST");
    expect(call.headers).toMatchObject({ authorization: "Bearer xyz", "x-custom": "kept", "content-type": "text/plain" });
    expect(Object.keys(call.headers).filter((h) => h.startsWith("x-rivetkit-"))).toEqual([]);
    // The handler sees the same stripped headers, and the body onAuth left unread.
    expect(Object.keys(res.body.headers).filter((h: string) => h.startsWith("x-rivetkit-"))).toEqual([]);
    expect(res.body.body).toBe("hello body");
  });

  it.each([
    ["getOrCreateForKey", q.getOrCreate("secured", ["intents"]), ["create", "fetch", "get"]],
    ["getForKey", q.get("secured", ["intents"]), ["fetch", "get"]],
    ["create", q.create("secured", ["intents-created"]), ["create", "fetch"]],
  ])("hands a Set of intents: %s", async (_kind, query, intents) => {
    // The server-side client makes sure the actor exists without calling onAuth.
    await registry.createServerClient().secured.getOrCreate(["intents"]).resolve();
    const res = await request(app).get(RAW + "/").set(QUERY, query).set("authorization", "t");
    expect(res.status).toBe(200);
    expect(calls).toHaveLength(1);
    expect(calls[0].isSet).toBe(true);
    expect(calls[0].intents).toEqual(intents);
  });

  it("hands {get, fetch} for getForId", async () => {
    const { body } = await request(app)
      .post("/registry/actors/resolve")
      .set(QUERY, q.getOrCreate("secured", ["by-id"]))
      .set("authorization", "t")
      .expect(200);
    // resolve is not a fetch: it asks only for what the query needs.
    expect(calls[0].intents).toEqual(["create", "get"]);
    calls.length = 0;
    const res = await request(app).get(RAW + "/").set(QUERY, q.getForId("secured", body.actorId)).set("authorization", "t");
    expect(res.status).toBe(200);
    expect(calls[0].intents).toEqual(["fetch", "get"]);
  });

  it("hands the conn params as args.params and as the second argument", async () => {
    const params = { token: "bob", nested: { list: [1, "two", null] } };
    await request(app)
      .get(RAW + "/")
      .set(QUERY, q.getOrCreate("secured", ["params"]))
      .set("X-RivetKit-Conn-Params", JSON.stringify(params))
      .expect(200);
    expect(calls[0].params).toEqual(params);
    expect(calls[0].secondArg).toEqual(params);
  });

  it("hands undefined params when the header is absent", async () => {
    await request(app).get(RAW + "/").set(QUERY, q.getOrCreate("secured", ["params"])).set("authorization", "t").expect(200);
    expect(calls[0].params).toBeUndefined();
    expect(calls[0].secondArg).toBeUndefined();
  });

  it("delivers its return value as `auth` in onFetch", async () => {
    const res = await request(app)
      .get(RAW + "/")
      .set(QUERY, q.getOrCreate("secured", ["auth"]))
      .set("authorization", "carol")
      .expect(200);
    expect(res.body.auth).toEqual({ user: "carol", roles: ["reader"] });
  });

  it.each([
    ["an object", { a: [1, { b: true }] }],
    ["a string", "user-1"],
    ["zero", 0],
    ["false", false],
    ["null", null],
  ])("delivers %s unchanged", async (_label, value) => {
    const res = await request(app)
      .get(RAW + "/")
      .set(QUERY, q.getOrCreate("echoAuth", ["v"]))
      .set("x-auth", JSON.stringify(value))
      .expect(200);
    expect(res.body.auth).toEqual(value);
  });

  it("runs on every request, not once per actor", async () => {
    for (let i = 0; i < 3; i++) {
      await request(app).get(RAW + "/").set(QUERY, q.getOrCreate("secured", ["every"])).set("authorization", "t").expect(200);
    }
    expect(calls).toHaveLength(3);
    expectWireError(await request(app).get(RAW + "/").set(QUERY, q.getOrCreate("secured", ["every"])), 401, "unauthorized");
  });

  it("can never be bypassed or forged by client headers", async () => {
    const forged = JSON.stringify({ user: "admin", roles: ["admin"] });
    const res = await request(app)
      .get(RAW + "/")
      .set(QUERY, q.getOrCreate("secured", ["forge"]))
      .set("X-RivetKit-Conn-Params", JSON.stringify({ token: "public" }))
      .set("X-RivetKit-Auth", forged)
      .set("X-RivetKit-Auth-Data", forged)
      .set("X-RivetKit-Expose-Internal-Error", "true")
      .set("auth", forged)
      .expect(200);
    expect(res.body.auth).toBe("<undefined>");
    expect(res.body.headers.auth).toBe(forged); // an ordinary header stays an ordinary header
  });
});
