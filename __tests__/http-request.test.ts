import http from "node:http";
import type { Socket } from "node:net";
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import request from "supertest";
import { actor, actorMiddleware, setup } from "express-actors";
import { expressVersions, listen } from "./helpers/servers";
import { RawConnection, eventually, header, rawRequest, sleep } from "./helpers/raw-http";

type Handler = (request: Request) => Response | Promise<Response>;

/** What the actor saw, as JSON, so tests can assert on the W3C Request. */
function describeRequest(request: Request) {
  return {
    url: request.url,
    method: request.method,
    headers: [...request.headers],
    hasBody: request.body !== null,
  };
}

const echo: Handler = (request) => Response.json(describeRequest(request));

// Each test installs its own handler; tests in a file run one after another.
let handler: Handler = echo;
let calls = 0;
const probe = actor({
  state: {},
  onAuth: () => null,
  onFetch: (_c, request) => {
    calls++;
    return handler(request);
  },
});

const QUERY = JSON.stringify({ getOrCreateForKey: { name: "probe", key: ["k"] } });
const BASE = "/registry/actors/raw/http";

/** A raw request head carrying the actor query. */
function head(method: string, target: string, lines: string[] = []): string {
  return [`${method} ${target} HTTP/1.1`, `X-RivetKit-Actor-Query: ${QUERY}`, ...lines, "", ""].join("\r\n");
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Reads a body chunk by chunk, pausing now and then like a slow consumer. */
async function readSlowly(body: ReadableStream<Uint8Array>, pauseEvery: number, pauseMs: number): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    parts.push(chunk);
    if (++n % pauseEvery === 0) await sleep(pauseMs);
  }
  return Buffer.concat(parts);
}

/** The server still answers (with the echo handler) after something went wrong. */
async function expectAlive(url: string) {
  handler = echo;
  await request(url).get(`${BASE}/alive`).set("X-RivetKit-Actor-Query", QUERY).expect(200);
}

beforeEach(() => {
  handler = echo;
  calls = 0;
});

describe.each(expressVersions)("request mapping on $label", ({ express }) => {
  const registry = setup({ use: { probe } });
  let lastSocket: Socket | undefined;
  let base: Awaited<ReturnType<typeof listen>>;
  let proxied: Awaited<ReturnType<typeof listen>>;
  let parsed: Awaited<ReturnType<typeof listen>>;
  let limited: Awaited<ReturnType<typeof listen>>;

  beforeAll(async () => {
    const app = express();
    app.use((req, _res, next) => {
      lastSocket = req.socket;
      next();
    });
    app.use("/registry", actorMiddleware(registry));
    app.use("/api/v1/deep", actorMiddleware(registry));
    const router = express.Router();
    router.use("/inner", actorMiddleware(registry));
    app.use("/outer", router);
    app.use(actorMiddleware(registry));
    base = await listen(app);

    const trusting = express();
    trusting.set("trust proxy", "loopback");
    trusting.use("/registry", actorMiddleware(registry));
    proxied = await listen(trusting);

    const withParsers = express();
    withParsers.use("/registry/actors/raw/http/json", express.json());
    withParsers.use("/registry/actors/raw/http/raw", express.raw({ type: "application/octet-stream" }));
    withParsers.use("/registry/actors/raw/http/text", express.text());
    withParsers.use("/registry/actors/raw/http/form", express.urlencoded({ extended: false }));
    withParsers.use("/registry/actors/raw/http/qs", express.urlencoded({ extended: true }));
    withParsers.use(
      "/registry/actors/raw/http/verify",
      express.json({ verify: (req, _res, buf) => ((req as { rawBody?: Buffer }).rawBody = Buffer.from(buf)) }),
    );
    // A body reader that leaves nothing behind (R20).
    withParsers.use("/registry/actors/raw/http/swallow", (req, _res, next) => {
      req.resume();
      req.on("end", () => next());
    });
    withParsers.use("/registry", actorMiddleware(registry));
    parsed = await listen(withParsers);

    const small = express();
    small.use(`${BASE}/text`, express.text());
    small.use("/registry", actorMiddleware(registry, { maxBodySize: 1024 }));
    limited = await listen(small);
  });

  afterAll(async () => {
    await Promise.all([base.close(), proxied.close(), parsed.close(), limited.close()]);
    await registry.shutdown();
  });

  /** Sends one raw request and returns the actor's view of it (the echo handler's JSON). */
  async function seen(url: string, raw: string) {
    const res = await rawRequest(url, raw);
    expect(res.status).toBe(200);
    return JSON.parse(res.body.toString()) as ReturnType<typeof describeRequest>;
  }

  describe("request.url (SPEC §2)", () => {
    it("is origin + path + the query string untouched, without the mount path (R1, R2)", async () => {
      const view = await seen(base.url, head("GET", `${BASE}/a/b?x=1&x=2&y=%20z&e=`, ["Host: localhost:3000"]));
      expect(view).toMatchObject({ url: "http://localhost:3000/a/b?x=1&x=2&y=%20z&e=", method: "GET", hasBody: false });

      for (const mount of ["/api/v1/deep", "/outer/inner", ""]) {
        const view = await seen(base.url, head("GET", `${mount}/actors/raw/http/items?z`, ["Host: h"]));
        expect(view.url).toBe("http://h/items?z");
      }
    });

    it.each([
      ["//a", "/a"],
      ["///a//b", "/a//b"],
      ["", "/"],
      ["/", "/"],
      ["?q=1", "/?q=1"],
      ["/a%2Fb/%7e/%zz?k=%2F%26&sp=%20", "/a%2Fb/%7e/%zz?k=%2F%26&sp=%20"],
      ["/a/./b/../c", "/a/c"],
      ["/%zz/../x", "/x"],
      ["/.//evil.com", "/evil.com"],
      ["/%2E%2E//evil.com?x", "/evil.com?x"],
      ["/a/..//evil.com", "/evil.com"],
      ["/x/%2e%2e//", "/"],
    ])("maps the path %j to %j (exactly one leading slash, escapes kept)", async (path, expected) => {
      const view = await seen(base.url, head("GET", BASE + path, ["Host: h:1"]));
      expect(view.url).toBe("http://h:1" + expected);
    });

    it("never lets a backslash in the path change the origin", async () => {
      for (const path of ["/\\evil.com/x", "/\\\\evil.com/x", "//\\/evil.com/x"]) {
        const view = await seen(base.url, head("GET", BASE + path, ["Host: h:1"]));
        expect(new URL(view.url).host).toBe("h:1");
        expect(new URL(view.url).pathname).toBe("/evil.com/x");
      }
    });

    it("has no fragment", async () => {
      const view = await seen(base.url, head("GET", `${BASE}/a#frag`, ["Host: h"]));
      expect(new URL(view.url).hash).toBe("");
      expect(view.url.startsWith("http://h/a")).toBe(true);
    });

    it("takes the origin from Host for an absolute-form target (R9)", async () => {
      const view = await seen(base.url, head("GET", `http://other.example${BASE}/abs?q`, ["Host: h:1"]));
      expect(view.url).toBe("http://h:1/abs?q");
    });

    it("keeps a bracketed IPv6 Host (R6)", async () => {
      const view = await seen(base.url, head("GET", `${BASE}/x`, ["Host: [::1]:8080"]));
      expect(view.url).toBe("http://[::1]:8080/x");
    });

    it("uses localhost when an HTTP/1.0 request has no Host (R8)", async () => {
      const res = await rawRequest(base.url, `GET ${BASE}/old HTTP/1.0\r\nX-RivetKit-Actor-Query: ${QUERY}\r\n\r\n`);
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body.toString()).url).toBe("http://localhost/old");
    });

    it.each(["a/b", "x y", "a@b", "h:99999", "a%2fb"])("answers Host %j with 400 JSON and keeps serving (R7)", async (host) => {
      const res = await rawRequest(base.url, head("GET", `${BASE}/x`, [`Host: ${host}`]));
      expect(res.status).toBe(400);
      expect(header(res, "content-type")).toBe("application/json");
      expect(JSON.parse(res.body.toString()).code).toBe("invalid_request");
      expect(calls).toBe(0);
      await expectAlive(base.url);
    });

    it("ignores X-Forwarded-Host/Proto when trust proxy is off (R3)", async () => {
      const view = await seen(
        base.url,
        head("GET", `${BASE}/p`, ["Host: real:1", "X-Forwarded-Host: evil.com", "X-Forwarded-Proto: https"]),
      );
      expect(view.url).toBe("http://real:1/p");
    });

    it("follows X-Forwarded-Host/Proto when Express trusts the proxy (R4)", async () => {
      const view = await seen(
        proxied.url,
        head("GET", `${BASE}/p?q`, ["Host: real:1", "X-Forwarded-Host: public.example, inner", "X-Forwarded-Proto: https"]),
      );
      expect(view.url).toBe("https://public.example/p?q");
    });

    it("never builds a non-http(s) URL from X-Forwarded-Proto (R5)", async () => {
      const view = await seen(proxied.url, head("GET", `${BASE}/p`, ["Host: real:1", "X-Forwarded-Proto: javascript"]));
      expect(view.url).toBe("http://real:1/p");
      const upper = await seen(proxied.url, head("GET", `${BASE}/p`, ["Host: real:1", "X-Forwarded-Proto: HTTPS"]));
      expect(upper.url).toBe("https://real:1/p");
    });

    it("rejects a bad trusted X-Forwarded-Host with 400", async () => {
      const res = await rawRequest(proxied.url, head("GET", `${BASE}/p`, ["Host: real:1", "X-Forwarded-Host: a/b"]));
      expect(res.status).toBe(400);
      expect(calls).toBe(0);
    });
  });

  describe("headers", () => {
    it("strips every X-RivetKit-* header, in any case, and keeps look-alikes", async () => {
      const raw = [
        `GET ${BASE}/h HTTP/1.1`,
        "Host: h",
        `x-RIVETKIT-actor-QUERY: ${QUERY}`,
        `X-RivetKit-Query: ${QUERY}`,
        "X-RivetKit-Encoding: JSON",
        "x-rivetkit-conn-params: {}",
        "X-Rivetkit-Custom: 1",
        "X-RIVETKIT-: empty suffix",
        "X-RivetKitty: kept",
        "X-Rivet-Kit-Query: kept",
        "X-Plain: kept",
        "",
        "",
      ].join("\r\n");
      const view = await seen(base.url, raw);
      const names = view.headers.map(([name]) => name);
      expect(names.filter((n) => n.startsWith("x-rivetkit-"))).toEqual([]);
      expect(names).toEqual(expect.arrayContaining(["x-rivetkitty", "x-rivet-kit-query", "x-plain", "host"]));
    });

    it("keeps repeated headers (R11, R12)", async () => {
      const view = await seen(
        base.url,
        head("GET", `${BASE}/h`, ["Host: h", "X-Custom: v1", "Cookie: a=1", "X-Custom: v2", "Cookie: b=2"]),
      );
      const get = (name: string) => view.headers.find(([n]) => n === name)?.[1];
      expect(get("x-custom")).toBe("v1, v2");
      expect(get("cookie")).toBe("a=1; b=2");
    });

    it("copes with obs-text bytes in a header value (R13)", async () => {
      const res = await rawRequest(base.url, head("GET", `${BASE}/h`, ["Host: h", "X-Latin: caf\xe9\xff"]));
      if (res.status === 200) {
        const view = JSON.parse(res.body.toString());
        expect(view.headers).toContainEqual(["x-latin", "caf\xe9\xff"]);
      } else expect(res.status).toBe(400);
      await expectAlive(base.url);
    });
  });

  describe("methods", () => {
    const methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "REPORT", "HEAD"];

    it.each(methods)("%s reaches onFetch with its method and a body only when allowed (R22, R23)", async (method) => {
      let view: ReturnType<typeof describeRequest> | undefined;
      handler = async (req) => {
        view = describeRequest(req);
        const text = req.body ? await req.text() : null;
        return Response.json({ text });
      };
      const withBody = method !== "GET" && method !== "HEAD";
      const res = await rawRequest(
        base.url,
        head(method, `${BASE}/m`, withBody ? ["Host: h", "Content-Length: 4"] : ["Host: h"]) + (withBody ? "body" : ""),
        { head: method === "HEAD" },
      );
      expect(res.status).toBe(200);
      expect(view).toMatchObject({ method, url: "http://h/m", hasBody: withBody });
      if (method !== "HEAD") expect(JSON.parse(res.body.toString()).text).toBe(withBody ? "body" : null);
    });

    it("answers TRACE with a clean 405 JSON error, not a crash (R24)", async () => {
      const res = await rawRequest(base.url, head("TRACE", `${BASE}/t`, ["Host: h"]));
      expect(res.status).toBe(405);
      expect(JSON.parse(res.body.toString()).code).toBe("method_not_allowed");
      expect(calls).toBe(0);
      await expectAlive(base.url);
    });

    it("gives a GET with a body a null body, and the keep-alive connection goes on (R21)", async () => {
      const conn = await RawConnection.open(base.url);
      try {
        conn.send(head("GET", `${BASE}/g`, ["Host: h", "Content-Length: 5"]) + "hello");
        const first = await conn.read();
        expect(first.status).toBe(200);
        expect(JSON.parse(first.body.toString()).hasBody).toBe(false);
        conn.send(head("GET", `${BASE}/second`, ["Host: h"]));
        const second = await conn.read();
        expect(second.status).toBe(200);
        expect(JSON.parse(second.body.toString()).url).toBe("http://h/second");
      } finally {
        conn.close();
      }
    });
  });

  describe("body", () => {
    it("streams a 10 MB upload with backpressure: a slow reader gets every byte in order (R14)", async () => {
      const size = 10 * 1024 * 1024;
      const payload = Buffer.alloc(size);
      for (let i = 0; i < size; i += 4) payload.writeUInt32LE(i, i);
      let bytesReadWhileWaiting = -1;
      handler = async (req) => {
        await sleep(300);
        bytesReadWhileWaiting = lastSocket!.bytesRead;
        const body = await readSlowly(req.body!, 16, 2);
        return Response.json({ length: body.length, hash: sha256(body) });
      };
      const res = await request(base.url)
        .post(`${BASE}/upload`)
        .set("X-RivetKit-Actor-Query", QUERY)
        .set("Content-Type", "application/octet-stream")
        .send(payload)
        .expect(200);
      expect(res.body).toEqual({ length: size, hash: sha256(payload) });
      // The socket was paused while nobody read: most of the upload was still on the client side.
      expect(bytesReadWhileWaiting).toBeGreaterThan(0);
      expect(bytesReadWhileWaiting).toBeLessThan(2 * 1024 * 1024);
    });

    it("receives a chunked upload whole (R30)", async () => {
      handler = async (req) => Response.json({ text: await req.text() });
      const body = await new Promise<string>((resolve, reject) => {
        const req = http.request(`${base.url}${BASE}/chunked`, {
          method: "POST",
          headers: { "X-RivetKit-Actor-Query": QUERY, "Content-Type": "text/plain" },
        });
        req.on("response", (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (d) => (text += d));
          res.on("end", () => resolve(text));
        });
        req.on("error", reject);
        let i = 0;
        const timer = setInterval(() => {
          req.write(`part${i};`);
          if (++i === 5) {
            clearInterval(timer);
            req.end();
          }
        }, 20);
      });
      expect(JSON.parse(body).text).toBe("part0;part1;part2;part3;part4;");
    });

    it("delivers a response when the handler ignores the body, and the connection is reusable (R15)", async () => {
      handler = () => new Response("nope", { status: 413 });
      const conn = await RawConnection.open(base.url);
      try {
        conn.send(head("POST", `${BASE}/ignored`, ["Host: h", "Content-Length: 200000"]) + "x".repeat(200000));
        const first = await conn.read();
        expect(first.status).toBe(413);
        expect(first.body.toString()).toBe("nope");
        handler = echo;
        conn.send(head("GET", `${BASE}/next`, ["Host: h"]));
        const second = await conn.read();
        expect(second.status).toBe(200);
      } finally {
        conn.close();
      }
    });

    it("can echo the request body as the response body while it streams in", async () => {
      handler = (req) => new Response(req.body, { headers: { "content-type": "application/octet-stream" } });
      const payload = Buffer.alloc(2 * 1024 * 1024);
      for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) % 256;
      const res = await request(base.url)
        .put(`${BASE}/echo`)
        .set("X-RivetKit-Actor-Query", QUERY)
        .set("Content-Type", "application/octet-stream")
        .send(payload)
        .buffer(true)
        .parse((r, cb) => {
          const parts: Buffer[] = [];
          r.on("data", (d: Buffer) => parts.push(d));
          r.on("end", () => cb(null, Buffer.concat(parts)));
        })
        .expect(200);
      expect(sha256(res.body as Buffer)).toBe(sha256(payload));
    });

    it("supports clone(), new Request(request) and single use of the body (R28, R29)", async () => {
      handler = async (req) => {
        const copy = req.clone();
        const wrapped = new Request(req.clone());
        const a = await req.text();
        const b = await copy.text();
        const c = await wrapped.text();
        const second = await req.text().then(
          () => "resolved",
          (err: Error) => err.name,
        );
        return Response.json({ instance: req instanceof Request, a, b, c, second });
      };
      const res = await request(base.url)
        .post(`${BASE}/clone`)
        .set("X-RivetKit-Actor-Query", QUERY)
        .set("Content-Type", "text/plain")
        .send("same")
        .expect(200);
      expect(res.body).toEqual({ instance: true, a: "same", b: "same", c: "same", second: "TypeError" });
    });

    it("leaves request.signal alone after a normal response (R27)", async () => {
      let kept: Request | undefined;
      handler = async (req) => {
        kept = req;
        return new Response("done");
      };
      await request(base.url).get(`${BASE}/ok`).set("X-RivetKit-Actor-Query", QUERY).expect(200);
      await sleep(20);
      expect(kept!.signal.aborted).toBe(false);
    });
  });

  describe("bodies consumed by body-parser are rebuilt (R16–R20)", () => {
    const post = (path: string) => request(parsed.url).post(`${BASE}/${path}`).set("X-RivetKit-Actor-Query", QUERY);
    const withLength = (req: Request, body: string | object) =>
      Response.json({ body, length: req.headers.get("content-length"), encoding: req.headers.get("content-encoding") });

    it("express.json() (R16)", async () => {
      handler = async (req) => withLength(req, await req.json());
      const res = await post("json").send({ a: 1, s: "é" }).expect(200);
      expect(res.body.body).toEqual({ a: 1, s: "é" });
      expect(Number(res.body.length)).toBe(Buffer.byteLength(JSON.stringify({ a: 1, s: "é" })));
    });

    it("an empty JSON POST stays empty, as without express.json()", async () => {
      handler = async (req) =>
        Response.json({ hasBody: req.body !== null, text: await req.text(), length: req.headers.get("content-length") });
      const emptyPost = (url: string) =>
        fetch(`${url}${BASE}/json`, { method: "POST", headers: { "X-RivetKit-Actor-Query": QUERY, "Content-Type": "application/json" } });
      const unparsed = await (await emptyPost(base.url)).json();
      expect(unparsed).toEqual({ hasBody: false, text: "", length: "0" });
      expect(await (await emptyPost(parsed.url)).json()).toEqual(unparsed);
    });

    it("a JSON body express.json() parsed is re-serialized: what changes (docs/api.md, bodies a parser already read)", async () => {
      handler = async (req) => new Response(await req.text());
      const sent = '{ "n": 12345678901234567890, "f": 1.0, "e": 1e3, "b": 0, "2": "int key", "u": "\\u00e9", "b": 1 }';
      const res = await post("json").set("Content-Type", "application/json").send(sent).expect(200);
      // Numbers go through doubles, whitespace and escapes go, integer-like keys move first, the last duplicate wins.
      expect(res.text).toBe('{"2":"int key","n":12345678901234567000,"f":1,"e":1000,"b":1,"u":"é"}');
    });

    it("an empty chunked JSON body that express.json() read arrives as {} (no length left to tell)", async () => {
      handler = async (req) => new Response(await req.text());
      const lines = ["Host: h", "Content-Type: application/json", "Transfer-Encoding: chunked"];
      const res = await rawRequest(parsed.url, head("POST", `${BASE}/json`, lines) + "0\r\n\r\n");
      expect(res.body.toString()).toBe("{}");
    });

    it("the raw bytes an app kept with verify arrive untouched, large integers included", async () => {
      handler = async (req) => new Response(await req.text());
      const sent = '{"n": 12345678901234567890, "f": 1.0}';
      const res = await post("verify").set("Content-Type", "application/json").send(sent).expect(200);
      expect(res.text).toBe(sent);
    });

    it("express.raw() gives the exact bytes (R17)", async () => {
      const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      handler = async (req) => {
        const hash = sha256(new Uint8Array(await req.arrayBuffer()));
        return Response.json({ hash, length: req.headers.get("content-length") });
      };
      const res = await post("raw").set("Content-Type", "application/octet-stream").send(bytes).expect(200);
      expect(res.body).toEqual({ hash: sha256(bytes), length: "256" });
    });

    it("express.text() (R18)", async () => {
      handler = async (req) => withLength(req, await req.text());
      const res = await post("text").set("Content-Type", "text/plain").send("héllo wörld").expect(200);
      expect(res.body.body).toBe("héllo wörld");
      expect(Number(res.body.length)).toBe(Buffer.byteLength("héllo wörld"));
    });

    it("gzip JSON inflated by express.json(): plain body, no content-encoding, right length (R19)", async () => {
      const json = JSON.stringify({ zipped: true, list: [1, 2, 3] });
      handler = async (req) => withLength(req, await req.json());
      const zipped = gzipSync(json);
      const lines = ["Host: h", "Content-Type: application/json", "Content-Encoding: gzip", `Content-Length: ${zipped.length}`];
      // Raw bytes: superagent would JSON-encode a Buffer sent as application/json.
      const res = await rawRequest(parsed.url, Buffer.concat([Buffer.from(head("POST", `${BASE}/json`, lines)), zipped]));
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body.toString())).toEqual({
        body: JSON.parse(json),
        length: String(Buffer.byteLength(json)),
        encoding: null,
      });
    });

    it("express.urlencoded(), repeated keys included", async () => {
      handler = async (req) => {
        const form = await req.formData();
        return Response.json({ a: form.getAll("a"), b: form.get("b") });
      };
      const res = await post("form").type("form").send("a=1&a=2&b=x+y").expect(200);
      expect(res.body).toEqual({ a: ["1", "2"], b: "x y" });
    });

    it("express.urlencoded({ extended: true }) with nested keys", async () => {
      handler = async (req) => Response.json({ text: await req.text() });
      const res = await post("qs").type("form").send("user[name]=ann&user[tags][]=x&user[tags][]=y&n=1").expect(200);
      // qs brackets, which express.urlencoded({ extended: true }) reads back into the same object.
      const params = new URLSearchParams(res.body.text);
      expect([...params]).toEqual([
        ["user[name]", "ann"],
        ["user[tags][]", "x"],
        ["user[tags][]", "y"],
        ["n", "1"],
      ]);
    });

    it("prefers the raw bytes an app kept with verify", async () => {
      handler = async (req) => new Response(await req.text());
      const res = await post("verify").set("Content-Type", "application/json").send('{ "spaced" :  true }').expect(200);
      expect(res.text).toBe('{ "spaced" :  true }');
    });

    it("gives an empty body and a warning, not a hang, when an unknown middleware ate it (R20)", async () => {
      const warn = jest.spyOn(console, "warn").mockImplementation(() => {});
      handler = async (req) => Response.json({ text: await req.text(), length: req.headers.get("content-length") });
      const res = await post("swallow").set("Content-Type", "text/plain").send("gone").expect(200);
      expect(res.body).toEqual({ text: "", length: "0" });
      expect(warn.mock.calls.flat().join(" ")).toContain("left no req.body");
      warn.mockRestore();
    });
  });

  describe("maxBodySize", () => {
    it("answers 413 payload_too_large from Content-Length without calling the actor", async () => {
      const raw = head("POST", `${BASE}/big`, ["Host: h", "Content-Length: 2000"]) + "x".repeat(2000);
      const res = await rawRequest(limited.url, raw);
      expect(res.status).toBe(413);
      expect(header(res, "content-type")).toBe("application/json");
      expect(JSON.parse(res.body.toString()).code).toBe("payload_too_large");
      expect(calls).toBe(0);
    });

    it("accepts a body of exactly the limit", async () => {
      handler = async (req) => Response.json({ length: (await req.arrayBuffer()).byteLength });
      const res = await request(limited.url)
        .post(`${BASE}/fits`)
        .set("X-RivetKit-Actor-Query", QUERY)
        .set("Content-Type", "application/octet-stream")
        .send(Buffer.alloc(1024))
        .expect(200);
      expect(res.body.length).toBe(1024);
    });

    it("answers 413 for a body over the limit that body-parser already read", async () => {
      const conn = await RawConnection.open(limited.url);
      try {
        conn.send(head("POST", `${BASE}/text`, ["Host: h", "Content-Type: text/plain", "Transfer-Encoding: chunked"]));
        conn.send(`7d0\r\n${"t".repeat(2000)}\r\n0\r\n\r\n`);
        const res = await conn.read();
        expect(res.status).toBe(413);
        expect(JSON.parse(res.body.toString()).code).toBe("payload_too_large");
        expect(calls).toBe(0);
      } finally {
        conn.close();
      }
    });

    it("answers 413 when the handler streams an over-limit body straight back", async () => {
      handler = (req) => new Response(req.body);
      const conn = await RawConnection.open(limited.url);
      try {
        conn.send(head("POST", `${BASE}/echo`, ["Host: h", "Transfer-Encoding: chunked"]) + `800\r\n${"e".repeat(2048)}\r\n`);
        const res = await conn.read();
        expect(res.status).toBe(413);
        expect(JSON.parse(res.body.toString()).code).toBe("payload_too_large");
      } finally {
        conn.close();
      }
    });

    it("cuts the connection when an echoed body goes over the limit after the response started", async () => {
      const warn = jest.spyOn(console, "warn").mockImplementation(() => {});
      handler = (req) => new Response(req.body);
      const conn = await RawConnection.open(limited.url);
      try {
        conn.send(head("POST", `${BASE}/echo`, ["Host: h", "Transfer-Encoding: chunked"]) + `200\r\n${"e".repeat(512)}\r\n`);
        await eventually(() => conn.received.includes("200 OK"));
        conn.send(`800\r\n${"e".repeat(2048)}\r\n`);
        await expect(conn.read()).rejects.toThrow("connection closed");
        await eventually(() => warn.mock.calls.flat().join(" ").includes("exceeds the limit"));
      } finally {
        conn.close();
        warn.mockRestore();
      }
      await expectAlive(limited.url);
    });

    it.each([
      ["the handler lets the error through", async (req: Request) => new Response(String((await req.arrayBuffer()).byteLength))],
      [
        "the handler swallows the error",
        async (req: Request) => {
          await req.arrayBuffer().catch(() => {});
          return new Response("handled");
        },
      ],
    ])("answers 413 for a chunked body over the limit when %s", async (_label, fn) => {
      handler = fn;
      const conn = await RawConnection.open(limited.url);
      try {
        conn.send(head("POST", `${BASE}/stream`, ["Host: h", "Transfer-Encoding: chunked"]));
        for (let i = 0; i < 3; i++) conn.send(`200\r\n${"y".repeat(512)}\r\n`);
        const res = await conn.read();
        expect(res.status).toBe(413);
        expect(JSON.parse(res.body.toString()).code).toBe("payload_too_large");
      } finally {
        conn.close();
      }
      await expectAlive(limited.url);
    });
  });

  describe("client going away", () => {
    /** Fails fast with a clear message instead of running into the test timeout. */
    const within = <T>(promise: Promise<T>, what: string) => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 3000);
      });
      return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
    };

    it("rejects the body read and aborts request.signal when the client aborts mid-upload (R25)", async () => {
      let readError: string | undefined;
      let signal: AbortSignal | undefined;
      let reading!: () => void;
      const started = new Promise<void>((r) => (reading = r));
      let finished!: () => void;
      const handlerDone = new Promise<void>((r) => (finished = r));
      handler = async (req) => {
        signal = req.signal;
        try {
          const reader = req.body!.getReader();
          await reader.read();
          reading();
          for (;;) if ((await reader.read()).done) break;
        } catch (err) {
          readError = (err as Error).name;
        } finally {
          finished();
        }
        return new Response("late");
      };
      const client = http.request(`${base.url}${BASE}/abort`, {
        method: "POST",
        headers: { "X-RivetKit-Actor-Query": QUERY, "Content-Length": String(1024 * 1024) },
      });
      client.on("error", () => {});
      client.write(Buffer.alloc(64 * 1024));
      await within(started, "the handler to start reading");
      client.destroy();
      await within(handlerDone, "the body read to settle");
      expect(readError).toBe("AbortError");
      await eventually(() => signal!.aborted);
      expect((signal!.reason as Error).name).toBe("AbortError");
      await expectAlive(base.url);
    });

    it("aborts request.signal when the client leaves while the handler awaits (R26)", async () => {
      let entered!: () => void;
      const inside = new Promise<void>((r) => (entered = r));
      let result!: (aborted: boolean) => void;
      const outcome = new Promise<boolean>((r) => (result = r));
      handler = async (req) => {
        entered();
        const aborted = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), 3000);
          req.signal.addEventListener("abort", () => {
            clearTimeout(timer);
            resolve(true);
          });
        });
        result(aborted);
        return new Response("too late");
      };
      const client = http.get(`${base.url}${BASE}/slow`, { headers: { "X-RivetKit-Actor-Query": QUERY } });
      client.on("error", () => {});
      await within(inside, "the handler");
      client.destroy();
      expect(await outcome).toBe(true);
      await sleep(20);
      await expectAlive(base.url);
    });

    it("aborts clones, copies and an upstream fetch(request) when the client leaves", async () => {
      // An upstream that never answers: only the abort can end the actor's fetch.
      const upstream = http.createServer(() => {});
      await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
      const upstreamUrl = `http://127.0.0.1:${(upstream.address() as { port: number }).port}/hang`;
      let entered!: () => void;
      const inside = new Promise<void>((r) => (entered = r));
      let report!: (seen: unknown) => void;
      const outcome = new Promise<unknown>((r) => (report = r));
      handler = async (req) => {
        const clone = req.clone();
        const copy = new Request(req);
        const proxied = fetch(new Request(upstreamUrl, req)).then(
          () => "answered",
          (err: Error) => err.name,
        );
        entered();
        await new Promise((resolve) => req.signal.addEventListener("abort", resolve));
        report({
          clone: clone.signal.aborted,
          copy: copy.signal.aborted,
          reason: (copy.signal.reason as Error).name,
          fetch: await proxied,
        });
        return new Response("too late");
      };
      try {
        const client = http.get(`${base.url}${BASE}/proxy`, { headers: { "X-RivetKit-Actor-Query": QUERY } });
        client.on("error", () => {});
        await within(inside, "the handler");
        await sleep(50);
        client.destroy();
        expect(await within(outcome, "the abort to reach the copies")).toEqual({
          clone: true,
          copy: true,
          reason: "AbortError",
          fetch: "AbortError",
        });
      } finally {
        upstream.closeAllConnections();
        upstream.close();
      }
      await expectAlive(base.url);
    });
  });
});
