import request from "supertest";
import { actor, actorMiddleware, Forbidden, memoryStore, setup, Unauthorized, UserError } from "express-actors";
import type { StateStore } from "express-actors";
import { expressVersions } from "./helpers/servers";
import { captureErrorLog, expectWireError, q, QUERY, RAW } from "./helpers/wire";

// Every HTTP row of SPEC §5, as a client of the router sees it, on both Express majors.

const open = actor({
  state: { hits: 0 },
  onAuth: () => null,
  onFetch: (c, req) => {
    const path = new URL(req.url).pathname;
    if (path === "/user-error") {
      throw new UserError("Room is full", { code: "room_full", metadata: { capacity: 4, who: ["a", "b"] } });
    }
    if (path === "/user-error-default") throw new UserError("Nope");
    if (path === "/unserializable-metadata") throw new UserError("Odd", { code: "odd", metadata: { n: 1n } });
    if (path === "/unauthorized") throw new Unauthorized();
    if (path === "/forbidden") throw new Forbidden("Admins only");
    if (path === "/crash") throw new Error("db password is hunter2");
    if (path === "/not-response") return "hello" as unknown as Response;
    c.state.hits++;
    return Response.json({ hits: c.state.hits, url: req.url });
  },
});

/** onAuth behaviour is picked by the `x-mode` header. */
const guarded = actor({
  onAuth: ({ request }) => {
    switch (request.headers.get("x-mode")) {
      case "user":
        throw new UserError("A token is required", { code: "missing_token", metadata: { header: "authorization" } });
      case "unauthorized":
        throw new Unauthorized("Bad token");
      case "forbidden":
        throw new Forbidden();
      case "crash":
        throw new Error("onAuth secret: connection string postgres://u:p@h");
      case "throw-string":
        throw "secret string thrown";
      default:
        return { user: "ok" };
    }
  },
  onFetch: () => new Response("in"),
});

const closed = actor({ onFetch: () => new Response("should never be reached") });
const noFetch = actor({ onAuth: () => null });

const send = (app: Parameters<typeof request>[0], query: string | undefined, path = "/") => {
  const r = request(app).get(RAW + path);
  return query === undefined ? r : r.set(QUERY, query);
};

describe.each(expressVersions)("wire errors on $label", ({ express }) => {
  const registry = setup({ use: { open, guarded, closed, noFetch } });
  const app = express();
  app.use("/registry", actorMiddleware(registry));
  afterAll(() => registry.shutdown());

  describe("400 invalid_query", () => {
    it("rejects a request without a query header", async () => {
      expectWireError(await send(app, undefined), 400, "invalid_query");
    });

    it.each([
      ["malformed JSON", "{getForKey:"],
      ["an empty header", ""],
      ["two kinds at once", JSON.stringify({ getForKey: { name: "open", key: [] }, create: { name: "open", key: [] } })],
      ["an unknown kind", JSON.stringify({ getByName: { name: "open", key: [] } })],
      ["an empty object", "{}"],
      ["a kind whose value is null", JSON.stringify({ getForKey: null })],
      ["a kind whose value is an array", JSON.stringify({ getForKey: ["open"] })],
      ["a missing name", JSON.stringify({ getOrCreateForKey: { key: ["a"] } })],
      ["an empty name", JSON.stringify({ getOrCreateForKey: { name: "", key: ["a"] } })],
      ["a numeric name", JSON.stringify({ getOrCreateForKey: { name: 7, key: ["a"] } })],
      ["a missing key", JSON.stringify({ getOrCreateForKey: { name: "open" } })],
      ["a key that is an object", JSON.stringify({ getOrCreateForKey: { name: "open", key: { a: 1 } } })],
      ["a key that is a number", JSON.stringify({ getOrCreateForKey: { name: "open", key: 5 } })],
      ["a key that is null", JSON.stringify({ getOrCreateForKey: { name: "open", key: null } })],
      ["a key with numbers", JSON.stringify({ getOrCreateForKey: { name: "open", key: ["a", 1] } })],
      ["a key with a nested array", JSON.stringify({ create: { name: "open", key: [["a"]] } })],
      ["a key with null", JSON.stringify({ getForKey: { name: "open", key: [null] } })],
      ["getForId without actorId", JSON.stringify({ getForId: { name: "open" } })],
      ["getForId with a numeric actorId", JSON.stringify({ getForId: { name: "open", actorId: 12 } })],
      ["an array", JSON.stringify([{ getForKey: { name: "open", key: [] } }])],
      ["a number", "42"],
      ["a string", JSON.stringify("open")],
      ["null", "null"],
      ["a __proto__ kind", '{"__proto__":{"name":"open","key":[]}}'],
      ["a key over the size limit", JSON.stringify({ getOrCreateForKey: { name: "open", key: ["x".repeat(8000)] } })],
      ["too many key parts", JSON.stringify({ getOrCreateForKey: { name: "open", key: Array(1000).fill("k") } })],
    ])("rejects %s", async (_label, query) => {
      expectWireError(await send(app, query), 400, "invalid_query");
    });

    it("rejects a query header too large for Node's parser without crashing, and keeps serving", async () => {
      const huge = JSON.stringify({ getOrCreateForKey: { name: "open", key: ["x".repeat(64 * 1024)] } });
      // Node answers 431 itself, before any middleware runs.
      expect((await send(app, huge)).status).toBe(431);
      expect((await send(app, q.getOrCreate("open", ["after-huge"]))).status).toBe(200);
    });

    it("rejects conn params that are not JSON", async () => {
      const res = await send(app, q.getOrCreate("open", ["a"])).set("X-RivetKit-Conn-Params", "{token:");
      expectWireError(res, 400, "invalid_query");
    });

    it("rejects a bad query on POST /actors/resolve too", async () => {
      const res = await request(app).post("/registry/actors/resolve").set(QUERY, "[1]");
      expectWireError(res, 400, "invalid_query");
    });

    it("accepts the X-RivetKit-Query alias, and the primary header wins when both are sent", async () => {
      const alias = await request(app).get(RAW + "/").set("X-RivetKit-Query", q.getOrCreate("open", ["alias"]));
      expect(alias.status).toBe(200);
      for (const order of [true, false]) {
        const r = request(app).get(RAW + "/");
        const both = order
          ? r.set(QUERY, q.getOrCreate("open", ["alias"])).set("X-RivetKit-Query", "broken")
          : r.set("X-RivetKit-Query", "broken").set(QUERY, q.getOrCreate("open", ["alias"]));
        expect((await both).status).toBe(200);
      }
      expectWireError(
        await request(app).get(RAW + "/").set(QUERY, "broken").set("X-RivetKit-Query", q.getOrCreate("open", ["alias"])),
        400,
        "invalid_query",
      );
    });
  });

  describe("400 invalid_encoding", () => {
    it.each(["cbor", "bare", "msgpack"])("rejects X-RivetKit-Encoding: %s", async (encoding) => {
      const res = await send(app, q.getOrCreate("open", ["enc"])).set("X-RivetKit-Encoding", encoding);
      expectWireError(res, 400, "invalid_encoding");
    });

    it("accepts json, and an absent header", async () => {
      expect((await send(app, q.getOrCreate("open", ["enc"])).set("X-RivetKit-Encoding", "json")).status).toBe(200);
      expect((await send(app, q.getOrCreate("open", ["enc"]))).status).toBe(200);
    });
  });

  describe("UserError → 400 with its code", () => {
    it("from onAuth, with its message and metadata", async () => {
      const res = await send(app, q.getOrCreate("guarded", ["a"])).set("x-mode", "user");
      expectWireError(res, 400, "missing_token");
      expect(res.body).toEqual({
        code: "missing_token",
        message: "A token is required",
        metadata: { header: "authorization" },
      });
    });

    it("from onFetch, with its message and metadata", async () => {
      const res = await send(app, q.getOrCreate("open", ["a"]), "/user-error");
      expectWireError(res, 400, "room_full");
      expect(res.body).toEqual({ code: "room_full", message: "Room is full", metadata: { capacity: 4, who: ["a", "b"] } });
    });

    it("defaults to code user_error and sends no metadata field when none was given", async () => {
      const res = await send(app, q.getOrCreate("open", ["a"]), "/user-error-default");
      expectWireError(res, 400, "user_error");
      expect(res.body).toEqual({ code: "user_error", message: "Nope" });
    });

    it("still answers JSON when the metadata cannot be serialized", async () => {
      const log = captureErrorLog();
      try {
        const res = await send(app, q.getOrCreate("open", ["a"]), "/unserializable-metadata");
        expectWireError(res, 400, "odd");
        expect(res.body).toEqual({ code: "odd", message: "Odd" });
      } finally {
        log.restore();
      }
    });
  });

  it("Unauthorized from onAuth → 401 unauthorized", async () => {
    const res = await send(app, q.getOrCreate("guarded", ["a"])).set("x-mode", "unauthorized");
    expectWireError(res, 401, "unauthorized");
    expect(res.body.message).toBe("Bad token");
  });

  it("Unauthorized from onFetch → 401 unauthorized", async () => {
    expectWireError(await send(app, q.getOrCreate("open", ["a"]), "/unauthorized"), 401, "unauthorized");
  });

  it("Forbidden from onAuth or onFetch → 403 forbidden", async () => {
    expectWireError(await send(app, q.getOrCreate("guarded", ["a"])).set("x-mode", "forbidden"), 403, "forbidden");
    const res = await send(app, q.getOrCreate("open", ["a"]), "/forbidden");
    expectWireError(res, 403, "forbidden");
    expect(res.body.message).toBe("Admins only");
  });

  it("an actor without onAuth → 403 forbidden, for every query kind", async () => {
    for (const query of [q.getOrCreate("closed", ["a"]), q.get("closed", ["a"]), q.create("closed", ["b"])]) {
      expectWireError(await send(app, query), 403, "forbidden");
    }
  });

  describe("404 actor_not_found", () => {
    it("for an unknown actor name, including Object.prototype names", async () => {
      for (const name of ["nope", "toString", "__proto__", "constructor"]) {
        expectWireError(await send(app, q.getOrCreate(name, ["a"])), 404, "actor_not_found");
      }
    });

    it("for get of an unknown key", async () => {
      expectWireError(await send(app, q.get("open", ["never-created"])), 404, "actor_not_found");
    });

    it("for getForId of an unknown id", async () => {
      expectWireError(await send(app, q.getForId("open", "00000000-0000-0000-0000-000000000000")), 404, "actor_not_found");
    });

    it("for getForId with the id of an actor of another name", async () => {
      const { body } = await request(app)
        .post("/registry/actors/resolve")
        .set(QUERY, q.getOrCreate("guarded", ["other-name"]))
        .expect(200);
      expect(typeof body.actorId).toBe("string");
      expectWireError(await send(app, q.getForId("open", body.actorId)), 404, "actor_not_found");
      expect((await send(app, q.getForId("guarded", body.actorId))).status).toBe(200);
    });
  });

  it("an actor without onFetch → 404 fetch_not_defined", async () => {
    expectWireError(await send(app, q.getOrCreate("noFetch", ["a"])), 404, "fetch_not_defined");
  });

  it("create on an existing key → 409 actor_already_exists", async () => {
    expect((await send(app, q.create("open", ["dup"]))).status).toBe(200);
    expectWireError(await send(app, q.create("open", ["dup"])), 409, "actor_already_exists");
    const resolve = await request(app).post("/registry/actors/resolve").set(QUERY, q.create("open", ["dup"]));
    expectWireError(resolve, 409, "actor_already_exists");
  });

  it("onFetch returning something other than a Response → 500 invalid_fetch_response", async () => {
    const log = captureErrorLog();
    try {
      expectWireError(await send(app, q.getOrCreate("open", ["a"]), "/not-response"), 500, "invalid_fetch_response");
    } finally {
      log.restore();
    }
  });

  describe("500 internal_error never shows the thrown message", () => {
    it.each([
      ["onAuth throws an Error", "crash", "postgres://"],
      ["onAuth throws a string", "throw-string", "secret string"],
    ])("when %s", async (_label, mode, secret) => {
      const log = captureErrorLog();
      try {
        const res = await send(app, q.getOrCreate("guarded", ["a"])).set("x-mode", mode);
        expectWireError(res, 500, "internal_error");
        expect(res.text).not.toContain(secret);
        expect(res.text).not.toMatch(/at .*\.ts/); // no stack
        expect(log.text()).toContain(secret); // logged server-side instead
      } finally {
        log.restore();
      }
    });

    it("when onFetch throws an Error", async () => {
      const log = captureErrorLog();
      try {
        const res = await send(app, q.getOrCreate("open", ["a"]), "/crash");
        expectWireError(res, 500, "internal_error");
        expect(res.text).not.toContain("hunter2");
        expect(log.text()).toContain("hunter2");
      } finally {
        log.restore();
      }
    });
  });

  it("odd requests get JSON errors and the server keeps serving", async () => {
    expectWireError(await send(app, q.getOrCreate("open", ["odd"])).set("Host", "not a host"), 400, "invalid_request");
    expectWireError(await request(app).trace(RAW + "/").set(QUERY, q.getOrCreate("open", ["odd"])), 405, "method_not_allowed");
    expect((await send(app, q.getOrCreate("open", ["odd"]))).status).toBe(200);
  });

  it("a request body over maxBodySize → 413 payload_too_large", async () => {
    const small = express();
    small.use("/registry", actorMiddleware(registry, { maxBodySize: 1024 }));
    const res = await request(small)
      .post(RAW + "/")
      .set(QUERY, q.getOrCreate("open", ["big"]))
      .send(Buffer.alloc(4096, 1));
    expectWireError(res, 413, "payload_too_large");
  });
});

describe.each(expressVersions)("registry-wide failures on $label", ({ express }) => {
  it("a state that cannot be saved → 503 state_save_failed", async () => {
    const base = memoryStore();
    const failing: StateStore = { ...base, save: () => Promise.reject(new Error("disk full")) };
    const saver = actor({ state: { n: 0 }, onAuth: () => null, onFetch: (c) => (c.state.n++, new Response("saved")) });
    const registry = setup({ use: { saver }, store: failing });
    const app = express();
    app.use("/registry", actorMiddleware(registry));
    const log = captureErrorLog();
    try {
      const res = await send(app, q.getOrCreate("saver", ["a"]));
      expectWireError(res, 503, "state_save_failed");
      expect(res.text).not.toContain("disk full");
    } finally {
      failing.save = base.save;
      await registry.shutdown();
      log.restore();
    }
  });

  it("a registry shutting down → 503 shutting_down, on the raw route and on resolve", async () => {
    const registry = setup({ use: { open } });
    const app = express();
    app.use("/registry", actorMiddleware(registry));
    expect((await send(app, q.getOrCreate("open", ["a"]))).status).toBe(200);
    await registry.shutdown();
    expectWireError(await send(app, q.getOrCreate("open", ["a"])), 503, "shutting_down");
    expectWireError(
      await request(app).post("/registry/actors/resolve").set(QUERY, q.getOrCreate("open", ["a"])),
      503,
      "shutting_down",
    );
  });
});
