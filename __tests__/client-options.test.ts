import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import expressWs from "express-ws";
import ts from "typescript";
import { Agent, fetch as undiciFetch } from "undici";
import WS from "ws";
import { actor, actorMiddleware, setup, Unauthorized } from "express-actors";
import { createClient, type ClientOptions } from "express-actors/client";
import { waitFor } from "./helpers/actor-harness";
import { expressVersions, type ExpressFactory } from "./helpers/servers";
import { within } from "./helpers/ws-harness";

// SPEC §3: createClient(url, { fetch, headers, WebSocket }). Real HTTPS servers with a private CA
// made here by openssl, Express 4 and 5 with express-ws; the same header checks over plain HTTP
// with the default WebSocket (`ws`).

interface Seen {
  key: string[];
  headers: Record<string, string>;
  auth: { cookie: string | null; authorization: string | null };
}

const authSaw: Array<{ intents: string[]; params: unknown; cookie: string | null; authorization: string | null }> = [];

const echo = actor({
  onAuth: ({ request, intents, params }) => {
    const seen = { cookie: request.headers.get("cookie"), authorization: request.headers.get("authorization") };
    authSaw.push({ intents: [...intents], params, ...seen });
    if (seen.authorization === "Bearer bad") throw new Unauthorized();
    return seen;
  },
  onFetch: (c, request, { auth }) => Response.json({ key: c.key, headers: Object.fromEntries(request.headers), auth }),
  onWebSocket: (c, ws, { request, auth }) => {
    ws.send(JSON.stringify({ key: c.key, headers: Object.fromEntries(request.headers), auth }));
    ws.addEventListener("message", (e) => ws.send(`echo:${String(e.data)}`));
  },
});

/** A CA and a server certificate for 127.0.0.1 that it signed, in a temp dir, by openssl. */
function makeCertificates(dir: string) {
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  run("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=express-actors test CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign");
  run("req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1");
  writeFileSync(path.join(dir, "server.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
    "-out", "server.crt", "-days", "2", "-extfile", "server.ext");
  const read = (name: string) => readFileSync(path.join(dir, name));
  return { ca: read("ca.crt"), key: read("server.key"), cert: read("server.crt") };
}

let certs: ReturnType<typeof makeCertificates>;
let certDir: string;
let agent: Agent;
/** fetch through undici with the private CA, as a Node app talking to an internal service would. */
let caFetch: typeof fetch;

beforeAll(() => {
  certDir = mkdtempSync(path.join(tmpdir(), "express-actors-ca-"));
  certs = makeCertificates(certDir);
  agent = new Agent({ connect: { ca: certs.ca } });
  caFetch = ((input: string, init: RequestInit) => undiciFetch(input, { ...init, dispatcher: agent } as never)) as unknown as typeof fetch;
});
afterAll(async () => {
  await agent.close();
  rmSync(certDir, { recursive: true, force: true });
});

/** `ws` with the private CA, written as the docs show: the third argument carries the client's headers. */
class CaWebSocket extends WS {
  constructor(url: string, protocols: string[], options?: WS.ClientOptions) {
    super(url, protocols, { ...options, ca: certs.ca });
  }
}

async function serve(express: ExpressFactory, secure: boolean) {
  const registry = setup({ use: { echo } });
  const app = express();
  const server = secure ? https.createServer({ key: certs.key, cert: certs.cert }, app) : http.createServer(app);
  const wsInstance = expressWs(app as any, server);
  app.use("/registry", actorMiddleware(registry));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `${secure ? "https" : "http"}://127.0.0.1:${port}/registry`,
    close: async () => {
      for (const socket of wsInstance.getWss().clients) socket.terminate();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await registry.shutdown();
    },
  };
}

/** The first message (what the actor saw on the upgrade) and the echo of "ping". */
async function talk(ws: WebSocket): Promise<{ seen: Seen; echoed: string }> {
  const messages: string[] = [];
  const closed = new Promise<CloseEvent>((resolve) => ws.addEventListener("close", (e) => resolve(e as CloseEvent)));
  ws.addEventListener("message", (e) => messages.push(String(e.data)));
  ws.addEventListener("open", () => ws.send("ping"));
  await Promise.race([
    waitFor(() => messages.length === 2, "the actor's greeting and its echo"),
    closed.then((e) => Promise.reject(new Error(`socket closed ${e.code} ${e.reason}`))),
  ]);
  ws.close();
  return { seen: JSON.parse(messages[0]) as Seen, echoed: messages[1] };
}

const closeOf = (ws: WebSocket) =>
  within(new Promise<CloseEvent>((resolve) => ws.addEventListener("close", (e) => resolve(e as CloseEvent))), "close");

const seenBy = async (res: Response) => (await res.json()) as Seen;

let unique = 0;
const key = () => [`k${++unique}`];

describe.each(expressVersions)("createClient options on $label", ({ express }) => {
  describe("HTTPS with a private CA", () => {
    let server: Awaited<ReturnType<typeof serve>>;
    beforeAll(async () => {
      server = await serve(express, true);
    });
    afterAll(() => server.close());

    it("the CA is private: a fetch that does not trust it fails, and so does the default WebSocket (1006)", async () => {
      const client = createClient(server.endpoint, { fetch: caFetch });
      expect((await client.echo.getOrCreate(key()).fetch("/")).status).toBe(200);
      await expect(createClient(server.endpoint).echo.getOrCreate(key()).fetch("/")).rejects.toThrow();
      expect((await closeOf(await client.echo.getOrCreate(key()).websocket())).code).toBe(1006);
    });

    it("WebSocket: a ws subclass with the CA opens the socket that fetch reaches", async () => {
      class PlainCaWebSocket extends WS {
        constructor(url: string, protocols: string[]) {
          super(url, protocols, { ca: certs.ca });
        }
      }
      const h = createClient(server.endpoint, { fetch: caFetch, WebSocket: PlainCaWebSocket }).echo.getOrCreate(key());
      expect((await h.fetch("/")).status).toBe(200);
      const ws = await h.websocket();
      expect(ws).toBeInstanceOf(PlainCaWebSocket);
      expect((await talk(ws)).echoed).toBe("echo:ping");
    });

    it("a constructor that is not ws-compatible is called with (url, protocols) only", async () => {
      const calls: unknown[][] = [];
      // Not a ws subclass (no ping/terminate on its prototype), like a browser's WebSocket.
      function W3COnly(...args: unknown[]) {
        calls.push(args);
        return new CaWebSocket(args[0] as string, args[1] as string[]);
      }
      const options = { fetch: caFetch, WebSocket: W3COnly as unknown as ClientOptions["WebSocket"], headers: { cookie: "sid=1" } };
      const { seen } = await talk(await createClient(server.endpoint, options).echo.getOrCreate(key()).websocket("/", "v1"));
      expect(calls).toHaveLength(1);
      expect(calls[0]).toHaveLength(2);
      expect(calls[0][0]).toMatch(/^wss:\/\/127\.0\.0\.1:\d+\/registry\/actors\/raw\/websocket\/$/);
      expect((calls[0][1] as string[]).at(-1)).toBe("v1");
      expect(seen.headers.cookie).toBeUndefined();
    });
  });

  describe.each([
    { label: "HTTPS, a ws subclass with the CA", secure: true },
    { label: "HTTP, the default WebSocket", secure: false },
  ])("headers ($label)", ({ secure }) => {
    let server: Awaited<ReturnType<typeof serve>>;
    const connect = (headers: ClientOptions["headers"]) =>
      createClient(server.endpoint, secure ? { fetch: caFetch, WebSocket: CaWebSocket, headers } : { headers });
    beforeAll(async () => {
      server = await serve(express, secure);
    });
    afterAll(() => server.close());

    it("reach the actor's request and onAuth, on HTTP and on the WebSocket upgrade", async () => {
      const h = connect({ Cookie: "sid=abc", Authorization: "Bearer t1", "X-Team": "blue" }).echo.getOrCreate(key());
      const expected = { cookie: "sid=abc", authorization: "Bearer t1" };
      for (const seen of [await seenBy(await h.fetch("/")), (await talk(await h.websocket())).seen]) {
        expect(seen.headers).toMatchObject({ ...expected, "x-team": "blue" });
        expect(seen.auth).toEqual(expected);
      }
    });

    it("onAuth refuses by a header: 401 over HTTP, 4401 on the socket", async () => {
      const h = connect({ authorization: "Bearer bad" }).echo.getOrCreate(key());
      expect((await h.fetch("/")).status).toBe(401);
      await expect(h.resolve()).rejects.toMatchObject({ code: "unauthorized" });
      expect((await closeOf(await h.websocket())).code).toBe(4401);
    });

    it("per-call headers of handle.fetch replace the client-wide ones of the same name", async () => {
      const h = connect({ authorization: "Bearer client", "x-team": "blue" }).echo.getOrCreate(key());
      const fromInit = await seenBy(await h.fetch("/", { headers: { Authorization: "Bearer call" } }));
      expect(fromInit.headers).toMatchObject({ authorization: "Bearer call", "x-team": "blue" });
      expect(fromInit.auth.authorization).toBe("Bearer call");
      const request = new Request("http://ignored/", { headers: { "x-team": "red" } });
      expect((await seenBy(await h.fetch(request))).headers).toMatchObject({ authorization: "Bearer client", "x-team": "red" });
    });

    it("a user X-RivetKit-* header never replaces the client's query or params", async () => {
      const forged = { getOrCreateForKey: { name: "echo", key: ["forged"] } };
      const client = connect({
        "X-RivetKit-Actor-Query": JSON.stringify(forged),
        "X-RivetKit-Query": JSON.stringify(forged),
        "X-RivetKit-Conn-Params": JSON.stringify({ user: "admin" }),
        "X-Team": "blue",
      });
      const k = key();
      const h = client.echo.getOrCreate(k);
      authSaw.length = 0;
      for (const seen of [await seenBy(await h.fetch("/")), (await talk(await h.websocket())).seen]) {
        expect(seen.key).toEqual(k);
        expect(seen.headers["x-team"]).toBe("blue");
        expect(Object.keys(seen.headers).filter((name) => name.startsWith("x-rivetkit-"))).toEqual([]);
      }
      const id = await h.resolve();
      expect(await client.echo.get(k).resolve()).toBe(id);
      expect(authSaw.map((a) => a.params)).toEqual([undefined, undefined, undefined, undefined]);
      const perCall = await seenBy(await h.fetch("/", { headers: { "X-RivetKit-Actor-Query": JSON.stringify(forged) } }));
      expect(perCall.key).toEqual(k);
      await expect(client.echo.get(["forged"]).resolve()).rejects.toMatchObject({ code: "actor_not_found" });
    });

    it("a header function is called (and awaited) for every request and every socket", async () => {
      let calls = 0;
      const client = connect(async () => ({ authorization: `Bearer ${++calls}` }));
      const h = client.echo.getOrCreate(key());
      expect((await seenBy(await h.fetch("/"))).auth.authorization).toBe("Bearer 1");
      expect((await seenBy(await h.fetch("/"))).auth.authorization).toBe("Bearer 2");
      expect((await talk(await h.websocket())).seen.auth.authorization).toBe("Bearer 3");
      authSaw.length = 0;
      await h.resolve();
      expect(authSaw.map((a) => a.authorization)).toEqual(["Bearer 4"]);
      expect(calls).toBe(4);
    });

    it("a header function that throws rejects that call", async () => {
      const h = connect(() => {
        throw new Error("token refresh failed");
      }).echo.getOrCreate(key());
      await expect(h.fetch("/")).rejects.toThrow("token refresh failed");
      await expect(h.websocket()).rejects.toThrow("token refresh failed");
    });
  });
});

describe("docs/api.md: HTTPS with a private CA", () => {
  const ROOT = path.join(__dirname, "..");
  const api = readFileSync(path.join(ROOT, "docs", "api.md"), "utf8");
  const after = api.slice(api.indexOf("\n### HTTPS with a private CA\n"));
  const recipe = /```ts\n([\s\S]*?)```/.exec(after)?.[1] ?? "";
  const CA_PATH = "/etc/ssl/internal-ca.pem";
  const URL_IN_DOCS = "https://actors.internal:8443/registry";

  it("has the recipe, with the CA path and URL this test replaces", () => {
    expect(recipe).toContain(CA_PATH);
    expect(recipe).toContain(URL_IN_DOCS);
  });

  it("type-checks strictly as a file of a user's project", () => {
    const dir = mkdtempSync(path.join(ROOT, ".client-recipe-"));
    try {
      const file = path.join(dir, "client.ts");
      writeFileSync(file, recipe.replace('from "express-actors/client"', 'from "../lib/client"'));
      const program = ts.createProgram([file], {
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.CommonJS,
        moduleResolution: ts.ModuleResolutionKind.Node10,
        lib: ["lib.es2022.d.ts", "lib.dom.d.ts", "lib.dom.iterable.d.ts"],
        types: ["node"],
        strict: true,
        esModuleInterop: true,
        skipLibCheck: true,
        noEmit: true,
      });
      const report = ts.formatDiagnostics(ts.getPreEmitDiagnostics(program), {
        getCanonicalFileName: (f) => f,
        getCurrentDirectory: () => ROOT,
        getNewLine: () => "\n",
      });
      expect(report).toBe("");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each(expressVersions)("runs as written against an HTTPS server on $label: fetch, socket and headers", async ({ express }) => {
    const server = await serve(express, true);
    process.env.API_TOKEN = "from-env";
    try {
      const code = recipe.replace(CA_PATH, path.join(certDir, "ca.crt")).replace(URL_IN_DOCS, server.endpoint);
      const js = ts.transpileModule(code, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true } });
      const exported: { client?: ReturnType<typeof createClient> } = {};
      new Function("require", "exports", js.outputText)(require, exported);
      const h = exported.client!.echo.getOrCreate(key());
      const expected = { cookie: null, authorization: "Bearer from-env" };
      expect((await seenBy(await h.fetch("/"))).auth).toEqual(expected);
      const { seen, echoed } = await talk(await h.websocket());
      expect(echoed).toBe("echo:ping");
      expect(seen.auth).toEqual(expected);
    } finally {
      delete process.env.API_TOKEN;
      await server.close();
    }
  });
});

describe("the browser build", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "express-actors-browser-"));
    execFileSync(process.execPath, [path.join("scripts", "build-browser.mjs"), path.join(dir, "client.js")], {
      cwd: path.join(__dirname, ".."),
      stdio: "pipe",
    });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("has no Node built-ins and no ws", () => {
    const bundle = readFileSync(path.join(dir, "client.js"), "utf8");
    expect(bundle).not.toMatch(/\bfrom\s*["'](node:|ws["'])/);
    expect(bundle).not.toMatch(/\b(require|import)\s*\(\s*["'](node:|ws["'])/);
    expect(bundle).not.toContain("ws does not work in the browser");
  });

  it("uses the page's WebSocket, called with (url, protocols) only: headers cannot go on a browser socket", () => {
    // A page's globals, in a child Node: a global WebSocket that records how it was called.
    const page = `
      const calls = [];
      globalThis.WebSocket = class { constructor(...args) { calls.push(args); } addEventListener() {} };
      const { createClient } = await import(${JSON.stringify(path.join(dir, "client.js"))});
      await createClient("http://127.0.0.1:1/registry", { headers: { cookie: "a=b" } }).echo.getOrCreate(["k"]).websocket();
      console.log(JSON.stringify(calls));
    `;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", page], { encoding: "utf8" });
    const calls = JSON.parse(out) as unknown[][];
    expect(calls).toHaveLength(1);
    expect(calls[0]).toHaveLength(2);
    expect(calls[0][0]).toBe("ws://127.0.0.1:1/registry/actors/raw/websocket/");
  });
});
