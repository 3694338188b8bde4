import http from "node:http";
import type { Socket } from "node:net";
import { createGunzip, gzipSync } from "node:zlib";
import compression from "compression";
import request from "supertest";
import { UserError, actor, actorMiddleware, setup } from "express-actors";
import { expressVersions, listen } from "./helpers/servers";
import { RawConnection, eventually, header, headerAll, rawRequest, sleep, timedRequest } from "./helpers/raw-http";

type Handler = (request: Request) => unknown;

// Each test installs its own handler; tests in a file run one after another.
let handler: Handler = () => new Response("ok");
const probe = actor({
  state: {},
  onAuth: () => null,
  onFetch: (_c, request) => handler(request) as Response,
});

const QUERY = JSON.stringify({ getOrCreateForKey: { name: "probe", key: ["k"] } });
const BASE = "/registry/actors/raw/http";

function head(method: string, path: string, lines: string[] = []): string {
  return [`${method} ${BASE}${path} HTTP/1.1`, "Host: h", `X-RivetKit-Actor-Query: ${QUERY}`, ...lines, "", ""].join("\r\n");
}

// Timers of ticker streams, stopped after each test so a failing test cannot keep jest alive.
const timers = new Set<NodeJS.Timeout>();
afterEach(() => {
  for (const timer of timers) clearInterval(timer);
  timers.clear();
});

/** A stream that enqueues `events` every `interval` ms, recording when each went in and whether it was cancelled. */
function ticker(events: string[] | "forever", interval: number) {
  const enqueuedAt: number[] = [];
  const state = { cancelled: false, cancelReason: undefined as unknown };
  let timer: NodeJS.Timeout | undefined;
  const encoder = new TextEncoder();
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      let i = 0;
      timer = setInterval(() => {
        if (events !== "forever" && i === events.length) {
          clearInterval(timer);
          controller.close();
          return;
        }
        controller.enqueue(encoder.encode(events === "forever" ? `data: ${i}\n\n` : events[i]));
        enqueuedAt.push(performance.now());
        i++;
      }, interval);
      timers.add(timer);
    },
    cancel(reason) {
      clearInterval(timer);
      state.cancelled = true;
      state.cancelReason = reason;
    },
  });
  return { stream, enqueuedAt, state };
}

const sse = (body: ReadableStream<Uint8Array>) =>
  new Response(body, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } });

/** Silences the library's error log for a test that provokes one; returns the logged text. */
function quietErrors() {
  const spy = jest.spyOn(console, "error").mockImplementation(() => {});
  return {
    text: () => spy.mock.calls.map((args) => args.map(String).join(" ")).join("\n"),
    restore: () => spy.mockRestore(),
  };
}

describe.each(expressVersions)("response mapping on $label", ({ express }) => {
  const registry = setup({ use: { probe } });
  let lastSocket: Socket | undefined;
  let base: Awaited<ReturnType<typeof listen>>;
  let zipped: Awaited<ReturnType<typeof listen>>;

  beforeAll(async () => {
    const app = express();
    app.use((req, _res, next) => {
      lastSocket = req.socket;
      next();
    });
    app.use(`${BASE}/pre`, (_req, res, next) => {
      res.setHeader("x-pre", "1");
      res.setHeader("set-cookie", "sid=early; Path=/");
      next();
    });
    app.use("/registry", actorMiddleware(registry));
    base = await listen(app);

    const withCompression = express();
    withCompression.use(compression());
    withCompression.use("/registry", actorMiddleware(registry));
    zipped = await listen(withCompression);
  });

  afterAll(async () => {
    await Promise.all([base.close(), zipped.close()]);
    await registry.shutdown();
  });

  const get = (path: string) => rawRequest(base.url, head("GET", path));

  async function expectAlive() {
    handler = () => new Response("alive");
    const res = await get("/alive");
    expect(res.body.toString()).toBe("alive");
  }

  describe("known-length bodies", () => {
    it("sends a string with its byte length and the default content type (S1)", async () => {
      handler = () => new Response("héllo");
      const res = await get("/s1");
      expect(res.status).toBe(200);
      expect(header(res, "content-type")).toBe("text/plain;charset=UTF-8");
      expect(header(res, "content-length")).toBe("6");
      expect(header(res, "transfer-encoding")).toBeUndefined();
      expect(res.body).toEqual(Buffer.from("héllo"));
    });

    it("sends Response.json with its status (S2)", async () => {
      handler = () => Response.json({ a: 1 }, { status: 201 });
      const res = await get("/s2");
      expect(res.status).toBe(201);
      expect(header(res, "content-type")).toBe("application/json");
      expect(header(res, "content-length")).toBe(String(Buffer.byteLength('{"a":1}')));
      expect(res.body.toString()).toBe('{"a":1}');
    });

    it("measures a stream that is already complete", async () => {
      handler = () =>
        new Response(
          new ReadableStream({
            start(c) {
              c.enqueue(new TextEncoder().encode("ab"));
              c.enqueue(new TextEncoder().encode("cd"));
              c.close();
            },
          }),
        );
      const res = await get("/done-stream");
      expect(header(res, "content-length")).toBe("4");
      expect(res.body.toString()).toBe("abcd");
    });

    it("keeps a content-length the handler set", async () => {
      handler = () => new Response("1234", { headers: { "content-length": "4", "x-mine": "yes" } });
      const res = await get("/own-length");
      expect(headerAll(res, "content-length")).toEqual(["4"]);
      expect(header(res, "x-mine")).toBe("yes");
    });

    it("sends exactly the window of a typed array or DataView (S21)", async () => {
      const buf = new Uint8Array(32).map((_, i) => i);
      for (const view of [new Uint8Array(buf.buffer, 8, 4), new DataView(buf.buffer, 8, 4)]) {
        handler = () => new Response(view);
        const res = await get("/window");
        expect(header(res, "content-length")).toBe("4");
        expect([...res.body]).toEqual([8, 9, 10, 11]);
      }
    });

    it("sends a Blob with its type and size (S22)", async () => {
      const bytes = new Uint8Array(300_000).map((_, i) => i % 251);
      handler = () => new Response(new Blob([bytes], { type: "image/x-test" }));
      const res = await get("/blob");
      expect(header(res, "content-type")).toBe("image/x-test");
      expect(header(res, "content-length")).toBe("300000");
      expect(res.body.equals(Buffer.from(bytes))).toBe(true);
    });
  });

  describe("status and headers", () => {
    it.each([
      [204, "no content"],
      [304, "not modified"],
    ])("sends %d without body, content-length or transfer-encoding, and the connection goes on (S3)", async (status) => {
      handler = () => new Response(null, { status, headers: { etag: '"v1"' } });
      const conn = await RawConnection.open(base.url);
      try {
        conn.send(head("GET", "/empty"));
        const res = await conn.read();
        expect(res.status).toBe(status);
        expect(header(res, "content-length")).toBeUndefined();
        expect(header(res, "transfer-encoding")).toBeUndefined();
        expect(header(res, "etag")).toBe('"v1"');
        handler = () => new Response("next");
        conn.send(head("GET", "/next"));
        expect((await conn.read()).body.toString()).toBe("next");
      } finally {
        conn.close();
      }
    });

    it("sends the statusText, or the standard phrase when it is empty (S4)", async () => {
      handler = () => new Response("x", { status: 200, statusText: "Fine" });
      expect((await get("/fine")).statusText).toBe("Fine");
      handler = () => new Response("x", { status: 200, statusText: "" });
      expect((await get("/ok")).statusText).toBe("OK");
      handler = () => new Response("x", { status: 418 });
      const teapot = await get("/teapot");
      expect([teapot.status, teapot.statusText]).toEqual([418, "I'm a Teapot"]);
    });

    it("replaces a statusText that could inject headers (S25)", async () => {
      class Sneaky extends Response {
        get statusText() {
          return "Fine\r\nX-Injected: 1";
        }
      }
      handler = () => new Sneaky("x");
      const res = await get("/sneaky");
      expect(res.status).toBe(200);
      expect(res.statusText).toBe("OK");
      expect(header(res, "x-injected")).toBeUndefined();
      expect(res.body.toString()).toBe("x");
    });

    it("sends each Set-Cookie on its own line (S5)", async () => {
      handler = () => {
        const headers = new Headers({ "content-type": "text/plain" });
        headers.append("set-cookie", "a=1; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT");
        headers.append("set-cookie", "b=2; HttpOnly");
        return new Response("c", { headers });
      };
      const res = await get("/cookies");
      expect(headerAll(res, "set-cookie")).toEqual(["a=1; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT", "b=2; HttpOnly"]);
    });

    it("keeps headers and cookies set by earlier middleware next to the actor's cookies (S6, S7)", async () => {
      handler = () => {
        const headers = new Headers();
        headers.append("set-cookie", "a=1");
        headers.append("set-cookie", "b=2");
        return new Response("c", { headers });
      };
      const res = await get("/pre/cookies");
      expect(header(res, "x-pre")).toBe("1");
      expect(headerAll(res, "set-cookie")).toEqual(["sid=early; Path=/", "a=1", "b=2"]);
    });

    it("lets the actor's headers win over earlier middleware's, except Set-Cookie which adds up", async () => {
      handler = () => new Response("c", { headers: { "x-pre": "actor" } });
      const res = await get("/pre/override");
      expect(headerAll(res, "x-pre")).toEqual(["actor"]);
      expect(headerAll(res, "set-cookie")).toEqual(["sid=early; Path=/"]);
    });

    it("sends redirects with their location (S8)", async () => {
      handler = () => Response.redirect("https://example.com/login?next=%2F", 302);
      const absolute = await get("/redirect");
      expect(absolute.status).toBe(302);
      expect(header(absolute, "location")).toBe("https://example.com/login?next=%2F");
      expect(header(absolute, "content-length")).toBe("0");

      handler = () => new Response(null, { status: 303, headers: { location: "/login" } });
      const relative = await get("/redirect");
      expect([relative.status, header(relative, "location")]).toEqual([303, "/login"]);
    });
  });

  describe("streaming", () => {
    it("sends chunks as the stream produces them (S9)", async () => {
      const source = ticker(["one", "two", "three"], 120);
      handler = () => new Response(source.stream);
      const timed = await timedRequest(`${base.url}${BASE}/chunks`, { headers: { "X-RivetKit-Actor-Query": QUERY } });
      expect(timed.res.headers["transfer-encoding"]).toBe("chunked");
      expect(timed.res.headers["content-length"]).toBeUndefined();
      expect((await timed.done).toString()).toBe("onetwothree");
      expect(timed.chunks.map((c) => c.data.toString())).toEqual(["one", "two", "three"]);
      expect(timed.chunks[2].at - timed.chunks[0].at).toBeGreaterThan(120);
    });

    it("lets compression() gzip a known-length body", async () => {
      const json = { rows: Array.from({ length: 500 }, (_, i) => ({ i, name: `row ${i}` })) };
      handler = () => Response.json(json);
      const res = await request(zipped.url)
        .get(`${BASE}/rows`)
        .set("X-RivetKit-Actor-Query", QUERY)
        .set("Accept-Encoding", "gzip")
        .expect(200);
      expect(res.headers["content-encoding"]).toBe("gzip");
      expect(res.body).toEqual(json);
    });

    it("sends a large streamed body intact with backpressure", async () => {
      const chunk = new Uint8Array(64 * 1024).map((_, i) => i % 253);
      let sent = 0;
      handler = () =>
        new Response(
          new ReadableStream({
            pull(c) {
              if (sent++ === 80) c.close();
              else c.enqueue(chunk.slice());
            },
          }),
        );
      const res = await request(base.url)
        .get(`${BASE}/big`)
        .set("X-RivetKit-Actor-Query", QUERY)
        .buffer(true)
        .parse((r, cb) => {
          const parts: Buffer[] = [];
          r.on("data", (d: Buffer) => parts.push(d));
          r.on("end", () => cb(null, Buffer.concat(parts)));
        })
        .expect(200);
      expect((res.body as Buffer).length).toBe(80 * chunk.length);
    });

    /** Reads an SSE response, recording when each event arrived (after gunzip when compressed). */
    async function readEvents(url: string, gzip: boolean) {
      const headers: Record<string, string> = { "X-RivetKit-Actor-Query": QUERY, accept: "text/event-stream" };
      if (gzip) headers["accept-encoding"] = "gzip";
      const timed = await timedRequest(url, { headers });
      const headersAt = performance.now();
      const arrivals: { at: number; text: string }[] = [];
      const body = gzip ? timed.res.pipe(createGunzip()) : timed.res;
      await new Promise<void>((resolve, reject) => {
        body.on("data", (d: Buffer) => arrivals.push({ at: performance.now(), text: d.toString() }));
        body.on("end", resolve);
        body.on("error", reject);
      });
      const eventAt = (event: string) => arrivals.find((a) => a.text.includes(event))?.at ?? NaN;
      return { res: timed.res, headersAt, eventAt, text: arrivals.map((a) => a.text).join("") };
    }

    it.each([
      ["without compression", false],
      ["behind compression()", true],
    ])("delivers SSE events one by one %s (S10, S11)", async (_label, gzip) => {
      const events = ["data: 0\n\n", "data: 1\n\n", "data: 2\n\n", "data: 3\n\n"];
      const source = ticker(events, 150);
      handler = () => sse(source.stream);
      const got = await readEvents(`${(gzip ? zipped : base).url}${BASE}/sse`, gzip);
      expect(got.res.headers["content-type"]).toBe("text/event-stream");
      expect(got.res.headers["content-encoding"]).toBe(gzip ? "gzip" : undefined);
      expect(got.text).toBe(events.join(""));
      // Headers come before the first event, and every event lands well before the next one is even produced.
      expect(got.headersAt).toBeLessThan(source.enqueuedAt[0]);
      events.forEach((event, i) => expect(got.eventAt(event) - source.enqueuedAt[i]).toBeLessThan(100));
    });

    it("cancels the stream and aborts request.signal when the client leaves (S12)", async () => {
      const source = ticker("forever", 30);
      let signal: AbortSignal | undefined;
      handler = (req) => {
        signal = (req as Request).signal;
        return sse(source.stream);
      };
      await new Promise<void>((resolve, reject) => {
        const req = http.get(`${base.url}${BASE}/forever`, { headers: { "X-RivetKit-Actor-Query": QUERY } }, (res) => {
          let text = "";
          res.on("data", (d: Buffer) => {
            text += d.toString();
            if (text.includes("data: 1\n\n")) {
              req.destroy();
              resolve();
            }
          });
        });
        req.on("error", () => {});
        setTimeout(() => reject(new Error("no events")), 2000);
      });
      await eventually(() => source.state.cancelled);
      expect(signal!.aborted).toBe(true);
      expect((source.state.cancelReason as Error).name).toBe("AbortError");
      const produced = source.enqueuedAt.length;
      await sleep(100);
      expect(source.enqueuedAt.length).toBe(produced);
      await expectAlive();
    });

    it("destroys the connection when the stream fails mid-way (S14)", async () => {
      const errors = quietErrors();
      try {
        handler = () =>
          new Response(
            new ReadableStream({
              start(c) {
                c.enqueue(new TextEncoder().encode("partial"));
                setTimeout(() => c.error(new Error("secret failure")), 50);
              },
            }),
          );
        const conn = await RawConnection.open(base.url);
        conn.send(head("GET", "/fails"));
        await expect(conn.read()).rejects.toThrow("connection closed before the response was complete");
        expect(conn.closed).toBe(true);
        await eventually(() => errors.text().includes("secret failure"));
        await expectAlive();
      } finally {
        errors.restore();
      }
    });

    it("answers 500 internal_error when the stream fails before its first byte (S15)", async () => {
      const errors = quietErrors();
      try {
        handler = () =>
          new Response(
            new ReadableStream({
              pull(c) {
                c.error(new Error("secret failure"));
              },
            }),
          );
        const res = await get("/fails-early");
        expect(res.status).toBe(500);
        expect(JSON.parse(res.body.toString())).toEqual({ code: "internal_error", message: "Internal error" });
        await expectAlive();
      } finally {
        errors.restore();
      }
    });
  });

  describe("non-byte chunks", () => {
    const enqueueing = (chunk: unknown, later: boolean) => () =>
      new Response(
        new ReadableStream({
          start(c) {
            if (!later) {
              c.enqueue(chunk);
              c.close();
              return;
            }
            c.enqueue(new TextEncoder().encode("ok "));
            setTimeout(() => {
              c.enqueue(chunk);
              c.close();
            }, 30);
          },
        }),
      );

    it.each([
      ["a string", "data: x\n\n"],
      ["an object", { a: 1 }],
    ])("answers 500 when the body's first chunk is %s", async (_label, chunk) => {
      const errors = quietErrors();
      try {
        handler = enqueueing(chunk, false);
        const res = await get("/not-bytes");
        expect(res.status).toBe(500);
        expect(JSON.parse(res.body.toString()).code).toBe("internal_error");
        expect(errors.text()).toContain("not a Uint8Array");
      } finally {
        errors.restore();
      }
    });

    it("cuts the connection when a later chunk is not bytes", async () => {
      const errors = quietErrors();
      try {
        handler = enqueueing("late text", true);
        const conn = await RawConnection.open(base.url);
        conn.send(head("GET", "/not-bytes-later"));
        await expect(conn.read()).rejects.toThrow("connection closed");
        await expectAlive();
      } finally {
        errors.restore();
      }
    });
  });

  it("answers a UserError raised by the body stream before its first byte like one from onFetch", async () => {
    handler = () =>
      new Response(
        new ReadableStream({
          pull() {
            throw new UserError("no data for you", { code: "no_data" });
          },
        }),
      );
    const res = await get("/user-error");
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body.toString())).toEqual({ code: "no_data", message: "no data for you" });
  });

  describe("HEAD", () => {
    it("sends the headers and content-length of a known body, and no body bytes (S17)", async () => {
      handler = () => new Response("abc", { headers: { "x-kind": "head" } });
      const conn = await RawConnection.open(base.url);
      try {
        conn.send(head("HEAD", "/h"));
        const res = await conn.read({ head: true });
        expect(res.status).toBe(200);
        expect(header(res, "content-length")).toBe("3");
        expect(header(res, "x-kind")).toBe("head");
        // Body bytes after the HEAD response would garble the next one on this connection.
        handler = () => new Response("next");
        conn.send(head("GET", "/next"));
        const next = await conn.read();
        expect([next.status, next.body.toString()]).toEqual([200, "next"]);
      } finally {
        conn.close();
      }
    });

    it("sends headers only for an endless stream and cancels it (S18)", async () => {
      const source = ticker("forever", 20);
      handler = () => sse(source.stream);
      const conn = await RawConnection.open(base.url);
      try {
        conn.send(head("HEAD", "/endless"));
        const res = await conn.read({ head: true });
        expect(res.status).toBe(200);
        expect(header(res, "content-type")).toBe("text/event-stream");
        await eventually(() => source.state.cancelled);
        handler = () => new Response("next");
        conn.send(head("GET", "/next"));
        expect((await conn.read()).body.toString()).toBe("next");
      } finally {
        conn.close();
      }
    });
  });

  describe("handler errors (SPEC §5)", () => {
    it.each([
      ["a string", () => "hello"],
      ["undefined", () => undefined],
      ["a response-like object", () => ({ status: 200, body: "x", headers: {} })],
      ["a promise of a string", async () => "hello"],
    ])("answers 500 invalid_fetch_response when onFetch returns %s", async (_label, fn) => {
      const errors = quietErrors();
      try {
        handler = fn;
        const res = await get("/junk");
        expect(res.status).toBe(500);
        expect(header(res, "content-type")).toBe("application/json");
        expect(JSON.parse(res.body.toString()).code).toBe("invalid_fetch_response");
      } finally {
        errors.restore();
      }
    });

    it.each([
      [
        "throws",
        () => {
          throw new Error("secret database password");
        },
      ],
      ["rejects", async () => Promise.reject(new TypeError("secret database password"))],
    ])("answers 500 internal_error with a generic message when onFetch %s (S16)", async (_label, fn) => {
      const errors = quietErrors();
      try {
        handler = fn;
        const res = await get("/throws");
        expect(res.status).toBe(500);
        const text = res.body.toString();
        expect(JSON.parse(text)).toEqual({ code: "internal_error", message: "Internal error" });
        expect(text).not.toContain("secret");
        expect(text).not.toContain("    at ");
        expect(errors.text()).toContain("secret database password");
        await expectAlive();
      } finally {
        errors.restore();
      }
    });

    it("answers 500 for Response.error() and keeps serving", async () => {
      const errors = quietErrors();
      try {
        handler = () => Response.error();
        const res = await get("/network-error");
        expect(res.status).toBe(500);
        expect(JSON.parse(res.body.toString()).message).toBe("Internal error");
        await expectAlive();
      } finally {
        errors.restore();
      }
    });
  });

  it("passes a fetch() response through decoded when the upstream was gzip (S23)", async () => {
    const json = JSON.stringify({ upstream: true, pad: "x".repeat(2000) });
    const upstream = await listen((_req: http.IncomingMessage, res: http.ServerResponse) => {
      const body = gzipSync(json);
      res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip", "content-length": body.length });
      res.end(body);
    });
    try {
      handler = () => fetch(upstream.url);
      const res = await get("/proxy");
      expect(res.status).toBe(200);
      expect(header(res, "content-encoding")).toBeUndefined();
      expect(res.body.toString()).toBe(json);
      expect(header(res, "content-length") ?? String(res.body.length)).toBe(String(res.body.length));
    } finally {
      await upstream.close();
    }
  });

  it("serves many keep-alive requests without piling up listeners on the socket (S26)", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    const counts: Record<string, number>[] = [];
    const snapshot = (socket: Socket) =>
      Object.fromEntries(socket.eventNames().map((name) => [String(name), socket.listenerCount(name)]));
    let n = 0;
    handler = () => {
      counts.push(snapshot(lastSocket!));
      // Alternate known-length and streamed responses: both paths register and drop listeners.
      return n++ % 2 ? new Response("k") : new Response(new Blob(["s"]).stream());
    };
    const conn = await RawConnection.open(base.url);
    try {
      for (let i = 0; i < 300; i++) {
        conn.send(head("GET", `/ka${i}`));
        const res = await conn.read();
        expect(res.status).toBe(200);
      }
    } finally {
      conn.close();
      process.off("warning", onWarning);
    }
    expect(counts[299]).toEqual(counts[2]);
    expect(warnings.filter((w) => w.name === "MaxListenersExceededWarning")).toEqual([]);
  });
});
