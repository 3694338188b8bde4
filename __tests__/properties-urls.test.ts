import fc from "fast-check";
import { actor, actorMiddleware, setup } from "express-actors";
import { createClient } from "express-actors/client";
import { ActorError } from "../lib/errors";
import { actorUrl } from "../lib/http/request";
import { stripOrigin } from "../lib/http/target";
import { actorPath, RAW_HTTP_PATH, RAW_WEBSOCKET_PATH } from "../lib/protocol";
import { checkProperty, tricky } from "./helpers/property";
import { RawConnection } from "./helpers/raw-http";
import { expressVersions, listen } from "./helpers/servers";

// Properties of URL and path building: whatever path a caller or a client gives, the actor's URL
// keeps the server's origin, a client's URL stays below its mount, and every string is handled.

/** The pieces that trip URL parsers: slashes of both kinds, dot segments and their escapes, controls. */
const path = tricky(["/", "//", "\\", ".", "..", "%2e", "%2E", "%2e%2e", "%", "%2f", "%5c", "?", "#", "&", "=", "\t", "\n", "\r", " ", "@", ":", "evil.com", "a", "é", "\u0000", "\ud800"], 14);
const ORIGINS = ["http://127.0.0.1:3000", "https://example.com", "http://[::1]:8080", "http://actor"];

describe("actorPath and actorUrl", () => {
  it("give exactly one leading slash, no fragment and no tab or newline, for any string", async () => {
    await checkProperty(
      fc.property(path, (value) => {
        const result = actorPath(value);
        expect(result).toMatch(/^\/(?![/\\])/);
        expect(result).not.toMatch(/[#\t\n\r]/);
      }),
      5000,
    );
  });

  it("never change the origin: the actor's URL is the server's origin plus a path", async () => {
    await checkProperty(
      fc.property(fc.constantFrom(...ORIGINS), path, (origin, value) => {
        let url: URL;
        try {
          url = new URL(actorUrl(origin, value));
        } catch (err) {
          expect(err).toBeInstanceOf(ActorError);
          expect((err as ActorError).code).toBe("invalid_request");
          return;
        }
        expect(url.origin).toBe(new URL(origin).origin);
        expect(url.hash).toBe("");
        expect(url.href.startsWith(url.origin + "/")).toBe(true);
      }),
      5000,
    );
  });

  it("are idempotent: a path the client normalized reaches the actor unchanged", async () => {
    await checkProperty(
      fc.property(path, (value) => {
        const once = actorPath(value);
        expect(actorPath(once)).toBe(once);
      }),
      5000,
    );
  });

  it("stripOrigin keeps the query of an absolute-form target without a path", () => {
    expect(stripOrigin("http://h:1?x=1")).toBe("/?x=1");
    expect(stripOrigin("http://h:1")).toBe("/");
  });

  it("stripOrigin turns any request target into an origin-form path", async () => {
    const target = fc.oneof(path, path.map((p) => "http://host:1" + p), path.map((p) => "a+b.c://x" + p));
    await checkProperty(
      fc.property(target, (value) => {
        expect(stripOrigin(value).startsWith("/")).toBe(true);
      }),
      5000,
    );
  });
});

describe("the client's URLs", () => {
  const base = "http://host.test:8080/registry";

  it.each([
    ["HTTP", RAW_HTTP_PATH],
    ["WebSocket", RAW_WEBSOCKET_PATH],
  ])("stay below the mount's %s route for any path", async (_what, route) => {
    await checkProperty(
      fc.property(path, (value) => {
        const url = new URL(base + route + actorPath(value));
        expect(url.origin).toBe("http://host.test:8080");
        expect(url.pathname.startsWith(`/registry${route}/`)).toBe(true);
      }),
      5000,
    );
  });
});

describe.each(expressVersions)("paths over the wire on $label", ({ express }) => {
  const echo = actor({ state: {}, onAuth: () => null, onFetch: (_c, request) => new Response(request.url) });
  const registry = setup({ use: { echo } });
  let server: Awaited<ReturnType<typeof listen>>;

  beforeAll(async () => {
    const app = express();
    app.use("/registry", actorMiddleware(registry));
    server = await listen(app);
  });
  afterAll(async () => {
    await server.close();
    await registry.shutdown();
  });

  it("the actor sees exactly the path and query of the client's URL below the route", async () => {
    const handle = createClient(server.url + "/registry").echo.getOrCreate(["paths"]);
    await checkProperty(
      fc.asyncProperty(path, async (value) => {
        const sent = new URL(server.url + "/registry" + RAW_HTTP_PATH + actorPath(value.split("#")[0]));
        const res = await handle.fetch(value);
        expect(res.status).toBe(200);
        const below = sent.pathname.slice(("/registry" + RAW_HTTP_PATH).length) + sent.search;
        expect(await res.text()).toBe(server.url + below);
      }),
      300,
    );
  });

  it("answers any request target, bytes included, with a response below 500", async () => {
    const conn = { current: await RawConnection.open(server.url) };
    const bytes = fc.array(fc.integer({ min: 0x21, max: 0xff }), { maxLength: 16 }).map((codes) => Buffer.from(codes).toString("latin1"));
    await checkProperty(
      fc.asyncProperty(fc.oneof(path.map((p) => encodeURI(p.replace(/[\ud800-\udfff]/g, ""))), bytes), async (tail) => {
        if (conn.current.closed) conn.current = await RawConnection.open(server.url);
        conn.current.send(
          `GET /registry${RAW_HTTP_PATH}/${tail} HTTP/1.1\r\nHost: x\r\n` +
            `X-RivetKit-Actor-Query: {"getOrCreateForKey":{"name":"echo","key":["raw"]}}\r\n\r\n`,
        );
        const res = await conn.current.read();
        expect(res.status).toBeLessThan(500);
        if (res.status === 200) expect(res.body.toString("latin1").startsWith("http://x/")).toBe(true);
      }),
      300,
    );
    conn.current.close();
  });
});
