import request from "supertest";
import { actor, forwardToActor, setup, Unauthorized } from "express-actors";
import { expressVersions } from "./helpers/servers";
import { captureErrorLog, expectWireError } from "./helpers/wire";

// forwardToActor on existing Express routes (SPEC §1 "Forwarding existing routes").

interface AuthCall {
  url: string;
  intents: string[];
  params: unknown;
  secondArg: unknown;
  headers: Record<string, string>;
}

const authCalls: AuthCall[] = [];

const room = actor({
  createState: (_c, input: unknown) => ({ input: input ?? null, hits: 0 }),
  onAuth: ({ request, intents, params }, secondArg) => {
    authCalls.push({
      url: request.url,
      intents: [...intents].sort(),
      params,
      secondArg,
      headers: Object.fromEntries(request.headers),
    });
    if (request.headers.get("x-deny")) throw new Unauthorized("Go away");
    return { via: "onAuth", params: params ?? null };
  },
  onFetch: async (c, req, { auth }) => {
    c.state.hits++;
    return Response.json({
      key: c.key,
      url: req.url,
      method: req.method,
      body: req.method === "GET" || req.method === "HEAD" ? "" : await req.text(),
      auth: auth === undefined ? "<undefined>" : auth,
      input: c.state.input,
      hits: c.state.hits,
      headers: Object.fromEntries(req.headers),
    });
  },
});

const lobby = actor({ onFetch: (_c, req, { auth }) => Response.json({ url: req.url, auth: auth ?? "<undefined>" }) });

describe.each(expressVersions)("forwardToActor on $label", ({ express, label }) => {
  const is5 = label === "express 5";
  // Express 5 names its wildcards; Express 4 numbers them.
  const wild = is5 ? "*rest" : "*";
  const restOf = (req: any): string => (is5 ? ([] as string[]).concat(req.params.rest).join("/") : req.params[0]);

  const registry = setup({ use: { room, lobby } });
  const app = express();
  app.all(
    `/rooms/:room/${wild}`,
    forwardToActor(registry, {
      name: "room",
      key: (req) => [req.params.room],
      params: (req) => ({ user: req.headers["x-user"] ?? null }),
      input: (req) => ({ createdFor: req.params.room }),
    }),
  );
  app.all(
    `/custom/:room/${wild}`,
    forwardToActor(registry, { name: "room", key: (req) => [req.params.room], path: (req) => "/" + restOf(req) }),
  );
  app.all(`/lobby/:id/${wild}`, forwardToActor(registry, { name: "lobby", key: (req) => [req.params.id] }));
  app.all(`/open-lobby/:id/${wild}`, forwardToActor(registry, { name: "lobby", key: (req) => [req.params.id], auth: "skip" }));
  app.all(`/skip/:room/${wild}`, forwardToActor(registry, { name: "room", key: (req) => [req.params.room], auth: "skip" }));
  app.all(
    `/key-throws/${wild}`,
    forwardToActor(registry, {
      name: "room",
      key: () => {
        throw new Error("key() secret detail");
      },
    }),
  );
  app.all(`/bad-key/${wild}`, forwardToActor(registry, { name: "room", key: () => [42 as unknown as string] }));
  app.post("/json/:room", express.json(), forwardToActor(registry, { name: "room", key: (req) => [req.params.room] }));
  app.get(
    `/ws/:room/${wild}`,
    forwardToActor(registry, { name: "room", key: (req) => [req.params.room] }),
    (_req, res) => {
      res.send("next() reached");
    },
  );
  const router = express.Router();
  router.all(`/rooms/:room/${wild}`, forwardToActor(registry, { name: "room", key: (req) => [req.params.room] }));
  app.use("/api", router);
  app.get("/alive", (_req, res) => {
    res.send("alive");
  });

  afterAll(() => registry.shutdown());
  beforeEach(() => {
    authCalls.length = 0;
  });

  it("takes the key from the route params and hands the actor req.url by default", async () => {
    const res = await request(app).get("/rooms/r1/chat/history?limit=5").expect(200);
    expect(res.body.key).toEqual(["r1"]);
    expect(res.body.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/rooms\/r1\/chat\/history\?limit=5$/);
  });

  it("gets-or-creates the actor, with input, and keeps its state between requests", async () => {
    const first = await request(app).post("/rooms/state-room/x").expect(200);
    expect(first.body.input).toEqual({ createdFor: "state-room" });
    const second = await request(app).post("/rooms/state-room/y").expect(200);
    expect(second.body.hits).toBe(2);
  });

  it("hands the actor the URL below the mount point when the route is in a mounted router", async () => {
    const res = await request(app).get("/api/rooms/r2/a/b?c=1").expect(200);
    expect(new URL(res.body.url).pathname + new URL(res.body.url).search).toBe("/rooms/r2/a/b?c=1");
    expect(res.body.key).toEqual(["r2"]);
  });

  it("uses path(req) when given, with a single leading slash", async () => {
    const res = await request(app).get("/custom/r3/deep/path").expect(200);
    expect(new URL(res.body.url).pathname).toBe("/deep/path");
  });

  it("passes method, headers and body through", async () => {
    const res = await request(app).put("/rooms/r4/upload").set("Content-Type", "text/plain").set("X-Other", "1").send("payload");
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ method: "PUT", body: "payload" });
    expect(res.body.headers).toMatchObject({ "content-type": "text/plain", "x-other": "1" });
  });

  it("rebuilds a body that express.json() already consumed", async () => {
    const res = await request(app).post("/json/r5").send({ hello: "world" }).expect(200);
    expect(JSON.parse(res.body.body)).toEqual({ hello: "world" });
  });

  it("ignores X-RivetKit-* headers from the caller: the route decides the actor", async () => {
    const res = await request(app)
      .get("/rooms/r6/x")
      .set("X-RivetKit-Actor-Query", JSON.stringify({ getForKey: { name: "lobby", key: ["other"] } }))
      .set("X-RivetKit-Conn-Params", JSON.stringify({ user: "mallory" }))
      .expect(200);
    expect(res.body.key).toEqual(["r6"]);
    expect(authCalls[0].params).toEqual({ user: null });
    expect(Object.keys(res.body.headers).filter((h: string) => h.startsWith("x-rivetkit-"))).toEqual([]);
  });

  describe('auth: "run" (the default)', () => {
    it("runs onAuth with intents get, create and fetch, the params of params(req), and the real URL", async () => {
      const res = await request(app).get("/rooms/r7/p?q=1").set("x-user", "alice").expect(200);
      expect(authCalls).toHaveLength(1);
      expect(authCalls[0].intents).toEqual(["create", "fetch", "get"]);
      expect(authCalls[0].params).toEqual({ user: "alice" });
      expect(authCalls[0].secondArg).toEqual({ user: "alice" });
      expect(authCalls[0].url).toMatch(/\/rooms\/r7\/p\?q=1$/);
      expect(res.body.auth).toEqual({ via: "onAuth", params: { user: "alice" } });
    });

    it("refuses with onAuth's error, before the actor is created", async () => {
      expectWireError(await request(app).get("/rooms/refused-room/x").set("x-deny", "1"), 401, "unauthorized");
      const server = registry.createServerClient();
      await expect(server.room.get("refused-room").resolve()).rejects.toMatchObject({ code: "actor_not_found" });
    });

    it("refuses an actor without onAuth with 403 forbidden", async () => {
      expectWireError(await request(app).get("/lobby/l1/x"), 403, "forbidden");
    });
  });

  describe('auth: "skip"', () => {
    it("reaches an actor without onAuth; auth is undefined", async () => {
      const res = await request(app).get("/open-lobby/l2/x").expect(200);
      expect(res.body.auth).toBe("<undefined>");
    });

    it("never calls onAuth", async () => {
      const res = await request(app).get("/skip/r8/x").set("x-deny", "1").expect(200);
      expect(authCalls).toHaveLength(0);
      expect(res.body.auth).toBe("<undefined>");
    });
  });

  it("passes WebSocket upgrade requests on to next()", async () => {
    const res = await request(app).get("/ws/r9/socket").set("Connection", "Upgrade").set("Upgrade", "websocket");
    expect(res.status).toBe(200);
    expect(res.text).toBe("next() reached");
    expect(authCalls).toHaveLength(0);
    // A plain request on the same route still reaches the actor.
    expect((await request(app).get("/ws/r9/socket")).body.key).toEqual(["r9"]);
  });

  it("answers 500 internal_error when key() throws, logs it, and keeps serving", async () => {
    const log = captureErrorLog();
    try {
      const res = await request(app).get("/key-throws/x");
      expectWireError(res, 500, "internal_error");
      expect(res.text).not.toContain("secret");
      expect(log.text()).toContain("key() secret detail");
    } finally {
      log.restore();
    }
    await request(app).get("/alive").expect(200, "alive");
  });

  it("answers 400 invalid_query when key() returns something that is not a key", async () => {
    expectWireError(await request(app).get("/bad-key/x"), 400, "invalid_query");
  });

  it("fails at setup, not per request, for a name the registry does not have", () => {
    expect(() => forwardToActor(registry as any, { name: "nope", key: () => [] })).toThrow(/no actor named "nope"/);
    expect(() => forwardToActor(registry, { name: "room" } as any)).toThrow(TypeError);
  });
});
