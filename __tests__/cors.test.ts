import request from "supertest";
import { actor, actorMiddleware, setup, UserError, type ActorMiddlewareOptions, type CorsOptions } from "express-actors";
import { actorQuery, RAW } from "./helpers/actor-harness";
import { expressVersions, type ExpressFactory } from "./helpers/servers";

// The `cors` option of actorMiddleware: preflights answered by the router, CORS headers on every
// other router response (errors included) for allowed origins only, off by default.

const seen: string[] = [];
const echo = actor({
  state: {},
  onAuth: () => null,
  onFetch: (_c, req) => {
    const { pathname } = new URL(req.url);
    seen.push(`${req.method} ${pathname}`);
    if (pathname === "/fail") throw new UserError("no thanks", { code: "nope" });
    if (pathname === "/vary") return new Response("varies", { headers: { vary: "Accept-Language" } });
    return Response.json({ method: req.method, origin: req.headers.get("origin") });
  },
});
/** No onAuth: private, so the router answers 403. */
const secret = actor({ state: {}, onFetch: () => new Response("never") });

const registry = setup({ use: { echo, secret } });
afterAll(() => registry.shutdown());

const A = "https://a.example";
const B = "https://b.example";
const EVIL = "https://evil.example";
const REQUESTED_HEADERS = "X-RivetKit-Actor-Query, X-RivetKit-Conn-Params, Content-Type";

function appWith(express: ExpressFactory, options?: ActorMiddlewareOptions) {
  const app = express();
  app.use("/registry", actorMiddleware(registry, options));
  app.get("/elsewhere", (_req, res) => {
    res.send("not the router");
  });
  return app;
}

const query = (key = "k") => actorQuery("echo", [key]);
const varies = (value: string | undefined) => (value ?? "").split(",").map((part) => part.trim().toLowerCase());
const corsHeaders = (headers: Record<string, string>) => Object.keys(headers).filter((name) => name.startsWith("access-control-"));

/** A browser's preflight: OPTIONS with Origin and Access-Control-Request-Method, and never the query itself. */
function preflight(app: ReturnType<typeof appWith>, origin: string, path = "/count") {
  return request(app)
    .options(RAW + path)
    .set("Origin", origin)
    .set("Access-Control-Request-Method", "POST")
    .set("Access-Control-Request-Headers", REQUESTED_HEADERS);
}

describe.each(expressVersions)("cors on $label", ({ express }) => {
  beforeEach(() => {
    seen.length = 0;
  });

  describe("off by default", () => {
    const app = appWith(express);

    it("adds no CORS header to a cross-origin request", async () => {
      const res = await request(app).get(RAW + "/x").set("Origin", A).set("X-RivetKit-Actor-Query", query()).expect(200);
      expect(corsHeaders(res.headers)).toEqual([]);
      expect(varies(res.headers.vary)).not.toContain("origin");
      expect(res.body).toEqual({ method: "GET", origin: A });
    });

    it("hands a preflight to onFetch as an ordinary OPTIONS request", async () => {
      const res = await preflight(app, A).set("X-RivetKit-Actor-Query", query()).expect(200);
      expect(res.body).toEqual({ method: "OPTIONS", origin: A });
      expect(corsHeaders(res.headers)).toEqual([]);
      expect(seen).toEqual(["OPTIONS /count"]);
    });

    it("answers a browser's preflight (no query header) with 400 and no CORS header, so the browser refuses", async () => {
      const res = await preflight(app, A).expect(400);
      expect(res.body.code).toBe("invalid_query");
      expect(corsHeaders(res.headers)).toEqual([]);
    });
  });

  describe.each<{ form: string; cors: CorsOptions; allowed: string[]; denied: string[] }>([
    { form: "a string", cors: { origin: A }, allowed: [A], denied: [B, EVIL, "https://a.example.evil.example", "null"] },
    { form: "a list", cors: { origin: [A, B] }, allowed: [A, B], denied: [EVIL, "https://A.example", "null"] },
    { form: "true (any origin)", cors: { origin: true }, allowed: [A, EVIL, "null"], denied: [] },
  ])("origin: $form", ({ cors, allowed, denied }) => {
    const app = appWith(express, { cors });

    it.each(allowed)("answers a preflight from %s itself: 204, the requested method and headers allowed", async (origin) => {
      const res = await preflight(app, origin).expect(204);
      expect(res.headers["access-control-allow-origin"]).toBe(origin); // echoed, never "*"
      expect(res.headers["access-control-allow-methods"]).toBe("POST");
      expect(res.headers["access-control-allow-headers"]).toBe(REQUESTED_HEADERS);
      expect(res.headers["access-control-allow-credentials"]).toBeUndefined();
      expect(Number(res.headers["access-control-max-age"])).toBeGreaterThan(0);
      expect(varies(res.headers.vary)).toEqual(expect.arrayContaining(["origin", "access-control-request-method", "access-control-request-headers"]));
      expect(res.text).toBe("");
      expect(seen).toEqual([]); // onFetch never sees a preflight
    });

    it.each(allowed)("answers a preflight for any method (%s, PUT) and without requested headers", async (origin) => {
      const res = await request(app)
        .options(RAW + "/count")
        .set("Origin", origin)
        .set("Access-Control-Request-Method", "PUT")
        .expect(204);
      expect(res.headers["access-control-allow-methods"]).toBe("PUT");
      expect(res.headers["access-control-allow-headers"]).toBeUndefined();
      expect(seen).toEqual([]);
    });

    it.each(allowed)("sets Access-Control-Allow-Origin on actual requests from %s", async (origin) => {
      const get = await request(app).get(RAW + "/x").set("Origin", origin).set("X-RivetKit-Actor-Query", query()).expect(200);
      expect(get.headers["access-control-allow-origin"]).toBe(origin);
      expect(varies(get.headers.vary)).toContain("origin");
      expect(get.headers["access-control-allow-methods"]).toBeUndefined(); // preflight-only headers
      const post = await request(app)
        .post(RAW + "/x")
        .set("Origin", origin)
        .set("X-RivetKit-Actor-Query", query())
        .send("body")
        .expect(200);
      expect(post.headers["access-control-allow-origin"]).toBe(origin);
      expect(post.body).toEqual({ method: "POST", origin });
    });

    it.each(allowed)("hands a plain OPTIONS from %s (no Access-Control-Request-Method) to onFetch, with the header", async (origin) => {
      const res = await request(app).options(RAW + "/x").set("Origin", origin).set("X-RivetKit-Actor-Query", query()).expect(200);
      expect(res.body).toEqual({ method: "OPTIONS", origin });
      expect(res.headers["access-control-allow-origin"]).toBe(origin);
      expect(res.headers["access-control-allow-methods"]).toBeUndefined();
      expect(seen).toEqual(["OPTIONS /x"]);
    });

    it.each(allowed)("sets the header on error responses for %s, so the page can read them", async (origin) => {
      const cases: Array<[number, string, request.Test]> = [
        [404, "actor_not_found", request(app).get(RAW + "/x").set("X-RivetKit-Actor-Query", actorQuery("echo", ["none"], "getForKey"))],
        [400, "invalid_query", request(app).get(RAW + "/x")],
        [400, "nope", request(app).get(RAW + "/fail").set("X-RivetKit-Actor-Query", query())],
        [403, "forbidden", request(app).get(RAW + "/x").set("X-RivetKit-Actor-Query", actorQuery("secret", ["k"]))],
      ];
      for (const [status, code, req] of cases) {
        const res = await req.set("Origin", origin).expect(status);
        expect(res.headers["content-type"]).toMatch(/^application\/json/);
        expect(res.body.code).toBe(code);
        expect(res.headers["access-control-allow-origin"]).toBe(origin);
      }
    });

    it.each(allowed)("covers the resolve and health routes for %s", async (origin) => {
      const resolve = await request(app).post("/registry/actors/resolve").set("Origin", origin).set("X-RivetKit-Actor-Query", query()).expect(200);
      expect(resolve.headers["access-control-allow-origin"]).toBe(origin);
      const resolvePreflight = await request(app)
        .options("/registry/actors/resolve")
        .set("Origin", origin)
        .set("Access-Control-Request-Method", "POST")
        .set("Access-Control-Request-Headers", "x-rivetkit-actor-query")
        .expect(204);
      expect(resolvePreflight.headers["access-control-allow-headers"]).toBe("x-rivetkit-actor-query");
      const health = await request(app).get("/registry/health").set("Origin", origin).expect(200);
      expect(health.headers["access-control-allow-origin"]).toBe(origin);
    });

    if (denied.length > 0) {
      it.each(denied)("gives a preflight from %s no CORS header (the browser then refuses)", async (origin) => {
        const res = await preflight(app, origin);
        expect(res.status).not.toBe(204);
        expect(corsHeaders(res.headers)).toEqual([]);
        expect(varies(res.headers.vary)).toContain("origin");
        expect(seen).toEqual([]);
      });

      it.each(denied)("answers actual requests from %s without CORS headers, errors included", async (origin) => {
        const ok = await request(app).get(RAW + "/x").set("Origin", origin).set("X-RivetKit-Actor-Query", query()).expect(200);
        expect(corsHeaders(ok.headers)).toEqual([]);
        expect(varies(ok.headers.vary)).toContain("origin");
        const missing = await request(app)
          .get(RAW + "/x")
          .set("Origin", origin)
          .set("X-RivetKit-Actor-Query", actorQuery("echo", ["none"], "getForKey"))
          .expect(404);
        expect(corsHeaders(missing.headers)).toEqual([]);
        const plainOptions = await request(app).options(RAW + "/x").set("Origin", origin).set("X-RivetKit-Actor-Query", query()).expect(200);
        expect(plainOptions.body.method).toBe("OPTIONS");
        expect(corsHeaders(plainOptions.headers)).toEqual([]);
      });
    }

    it("sends Vary: Origin on responses without an Origin (same-origin pages, curl), so caches keep them apart", async () => {
      const res = await request(app).get(RAW + "/x").set("X-RivetKit-Actor-Query", query()).expect(200);
      expect(corsHeaders(res.headers)).toEqual([]);
      expect(varies(res.headers.vary)).toContain("origin");
    });

    it("keeps Vary: Origin when the actor's Response sets its own Vary", async () => {
      const origin = allowed[0];
      const res = await request(app).get(RAW + "/vary").set("Origin", origin).set("X-RivetKit-Actor-Query", query()).expect(200);
      expect(res.headers["access-control-allow-origin"]).toBe(origin);
      expect(varies(res.headers.vary)).toEqual(expect.arrayContaining(["origin", "accept-language"]));
    });

    it("leaves routes outside the router alone", async () => {
      const res = await request(app).get("/elsewhere").set("Origin", allowed[0]).expect(200);
      expect(corsHeaders(res.headers)).toEqual([]);
      const unknown = await request(app).get("/registry/not-a-route").set("Origin", allowed[0]).expect(404);
      expect(corsHeaders(unknown.headers)).toEqual([]);
    });
  });

  describe("credentials: true", () => {
    const app = appWith(express, { cors: { origin: [A], credentials: true } });

    it("adds Access-Control-Allow-Credentials to preflights and responses for allowed origins only", async () => {
      const pre = await preflight(app, A).expect(204);
      expect(pre.headers["access-control-allow-credentials"]).toBe("true");
      expect(pre.headers["access-control-allow-origin"]).toBe(A);
      const res = await request(app).get(RAW + "/x").set("Origin", A).set("Cookie", "sid=1").set("X-RivetKit-Actor-Query", query()).expect(200);
      expect(res.headers["access-control-allow-credentials"]).toBe("true");
      expect(res.headers["access-control-allow-origin"]).toBe(A);
      const denied = await request(app).get(RAW + "/x").set("Origin", EVIL).set("X-RivetKit-Actor-Query", query()).expect(200);
      expect(corsHeaders(denied.headers)).toEqual([]);
    });

    it("echoes the origin with origin: true, never the wildcard that credentials forbid", async () => {
      const anyApp = appWith(express, { cors: { origin: true, credentials: true } });
      const res = await preflight(anyApp, EVIL).expect(204);
      expect(res.headers["access-control-allow-origin"]).toBe(EVIL);
      expect(res.headers["access-control-allow-credentials"]).toBe("true");
    });
  });

  it("rejects a malformed origin option at startup", () => {
    expect(() => actorMiddleware(registry, { cors: { origin: 42 as unknown as string } })).toThrow(TypeError);
    expect(() => actorMiddleware(registry, { cors: {} as CorsOptions })).toThrow(/cors\.origin/);
  });
});
