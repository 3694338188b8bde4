import { execFile } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { promisify } from "node:util";
import ts from "typescript";
import type { Express, RequestHandler } from "express";
import request from "supertest";
import * as expressActors from "express-actors";
import { actor, actorMiddleware, setup } from "express-actors";
import { expressVersions } from "./helpers/servers";

// The README's first actor is what a new user copies: it must type-check as two files of a user's
// project and answer the README's curl with the README's output, then its RivetKit client snippet with
// the real `rivetkit` client. docs/api.md's forwarding examples
// and its mount-path rules are run as written. Every relative link of the README and docs/ must lead
// to an existing file and heading.

const ROOT = path.resolve(__dirname, "..");
const README = path.join(ROOT, "README.md");
const DOCS = path.join(ROOT, "docs");

interface Block {
  lang: string;
  code: string;
}

/** Fenced code blocks of a markdown text, in order. */
function codeBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  let open: Block | undefined;
  for (const line of markdown.split("\n")) {
    const fence = /^```(\S*)/.exec(line);
    if (fence && !open) open = { lang: fence[1], code: "" };
    else if (fence && open) {
      blocks.push(open);
      open = undefined;
    } else if (open) open.code += line + "\n";
  }
  return blocks;
}

/** The text of a `## heading` section, up to the next `## ` heading outside a code block. */
function section(markdown: string, heading: string): string {
  const lines = markdown.split("\n");
  const start = lines.indexOf("## " + heading);
  if (start === -1) throw new Error(`no "## ${heading}" section`);
  let inFence = false;
  let end = lines.length;
  for (let i = start + 1; i < lines.length; i++) {
    if (lines[i].startsWith("```")) inFence = !inFence;
    if (!inFence && lines[i].startsWith("## ")) {
      end = i;
      break;
    }
  }
  return lines.slice(start + 1, end).join("\n");
}

/** The words of a shell command line, with '…' and "…" quoting and \-newline continuations. */
function shellWords(command: string): string[] {
  const words: string[] = [];
  const re = /'([^']*)'|"((?:\\.|[^"\\])*)"|(\S+)/g;
  for (const m of command.replace(/\\\n/g, " ").matchAll(re)) words.push(m[1] ?? m[2]?.replace(/\\(.)/g, "$1") ?? m[3]);
  return words;
}

/** A curl command as fetch arguments (only the flags the README uses: -X and -H). */
function parseCurl(command: string): { url: string; method: string; headers: Record<string, string> } {
  const words = shellWords(command.split("\n").filter((line) => !line.startsWith("#")).join("\n"));
  expect(words[0]).toBe("curl");
  let url = "";
  let method = "GET";
  const headers: Record<string, string> = {};
  for (let i = 1; i < words.length; i++) {
    if (words[i] === "-X") method = words[++i];
    else if (words[i] === "-H") {
      const header = words[++i];
      const colon = header.indexOf(":");
      headers[header.slice(0, colon).trim()] = header.slice(colon + 1).trim();
    } else if (words[i].startsWith("-")) throw new Error(`the README's curl uses ${words[i]}, which this test does not read`);
    else url = words[i];
  }
  return { url: /^https?:\/\//.test(url) ? url : "http://" + url, method, headers };
}

const readme = fs.readFileSync(README, "utf8");
const firstActor = section(readme, "A first actor");
const tsBlocks = codeBlocks(firstActor).filter((b) => b.lang === "ts");
const serverSnippet = tsBlocks.find((b) => b.code.includes("actorMiddleware"))?.code;
const clientSnippet = tsBlocks.find((b) => b.code.includes("createClient"))?.code;
const curlSnippet = codeBlocks(firstActor).find((b) => b.lang === "sh" && b.code.startsWith("curl"))?.code;
const rivetkitSnippet = codeBlocks(section(readme, "Using the official RivetKit client")).find((b) => b.lang === "ts")?.code;

/** The snippet as a file of the user's project, with the package's imports pointing at lib/. */
const asProjectFile = (code: string) =>
  code.replace(/from "express-actors(\/client)?"/g, (_m, sub: string | undefined) => `from "../lib${sub ?? ""}"`);

/** Points every localhost:PORT of a snippet at the test's server. */
const atPort = (code: string, port: number) => code.replace(/localhost:\d+/g, `127.0.0.1:${port}`);

/** Type-checks files as an ESM TypeScript project would (top-level await in the client snippets); "" when clean. */
function typeCheck(files: string[]): string {
  const program = ts.createProgram(files, {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ["lib.es2022.d.ts", "lib.dom.d.ts", "lib.dom.iterable.d.ts"],
    types: ["node"],
    strict: true,
    esModuleInterop: true,
    skipLibCheck: true,
    noUnusedLocals: true,
    noEmit: true,
  });
  return ts.formatDiagnostics(ts.getPreEmitDiagnostics(program), {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => ROOT,
    getNewLine: () => "\n",
  });
}

/**
 * Runs the RivetKit snippet with the real client `pkg` ("rivetkit" or the alias "rivetkit-latest") in
 * a Node process of its own: the package needs Node's own ES module loader, which Jest's is not.
 * Returns what it printed.
 */
async function runRivetkitSnippet(pkg: string, port: number): Promise<string> {
  const code = atPort(rivetkitSnippet!, port).replace(/from "rivetkit\/client"/, `from "${pkg}/client"`);
  const file = path.join(dir, `${pkg}-run.mjs`);
  fs.writeFileSync(file, ts.transpileModule(code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText);
  const { stdout } = await promisify(execFile)(process.execPath, [file], { cwd: ROOT, env: { PATH: process.env.PATH, LOG_LEVEL: "error" } });
  return stdout.trim();
}

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(ROOT, ".docs-examples-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("README: a first actor", () => {
  test("has a server snippet, a curl and a client snippet", () => {
    expect(serverSnippet).toBeDefined();
    expect(curlSnippet).toBeDefined();
    expect(clientSnippet).toBeDefined();
  });

  test("the server and client snippets type-check together as server.ts and client.ts", () => {
    const server = path.join(dir, "server.ts");
    const client = path.join(dir, "client.ts");
    fs.writeFileSync(server, asProjectFile(serverSnippet!));
    fs.writeFileSync(client, asProjectFile(clientSnippet!));
    expect(typeCheck([server, client])).toBe("");
  });

  test("the server answers the README's curl with the README's output, then the client's, then RivetKit's client's", async () => {
    const expectedCurl = /^# (.*)$/m.exec(curlSnippet!)?.[1];
    const expectedClient = /console\.log\(.*\); \/\/ (.*)$/m.exec(clientSnippet!)?.[1];
    const expectedRivetkit = /console\.log\(.*\); \/\/ (\{[^}]*\})/m.exec(rivetkitSnippet!)?.[1];
    expect(expectedCurl).toBeDefined();
    expect(expectedClient).toBeDefined();
    expect(expectedRivetkit).toBeDefined();

    // The snippet listens on a fixed port; the test gives it a free one on 127.0.0.1.
    const listen = http.Server.prototype.listen as (port: number, host: string, callback?: () => void) => http.Server;
    let server: http.Server | undefined;
    http.Server.prototype.listen = function (this: http.Server, ...args: unknown[]) {
      server = this;
      const callback = args.find((a) => typeof a === "function") as (() => void) | undefined;
      return listen.call(this, 0, "127.0.0.1", callback);
    } as typeof http.Server.prototype.listen;
    let serverModule: { registry?: { shutdown(): Promise<void> } } | undefined;
    try {
      fs.writeFileSync(path.join(dir, "server-run.ts"), asProjectFile(serverSnippet!));
      serverModule = require(path.join(dir, "server-run.ts"));
    } finally {
      http.Server.prototype.listen = listen as typeof http.Server.prototype.listen;
    }
    try {
      expect(server).toBeDefined();
      if (!server!.listening) await new Promise((resolve) => server!.once("listening", resolve));
      const port = (server!.address() as { port: number }).port;

      const curl = parseCurl(atPort(curlSnippet!, port));
      const res = await fetch(curl.url, { method: curl.method, headers: curl.headers });
      expect(res.status).toBe(200);
      const body = await res.json();
      expect(body).toEqual({ count: 1 });
      expect(body).toEqual(JSON.parse(expectedCurl!));

      // The client snippet's statements, run as a function (its imports kept at the top).
      const code = asProjectFile(atPort(clientSnippet!, port));
      const imports = code.split("\n").filter((l) => l.startsWith("import "));
      const statements = code.split("\n").filter((l) => !l.startsWith("import "));
      fs.writeFileSync(
        path.join(dir, "client-run.ts"),
        [...imports, "export async function main() {", ...statements, "}"].join("\n"),
      );
      const log = jest.spyOn(console, "log").mockImplementation(() => {});
      try {
        await require(path.join(dir, "client-run.ts")).main();
        expect(log).toHaveBeenCalledTimes(1);
        expect(log.mock.calls[0][0]).toEqual({ count: 2 });
        expect(log.mock.calls[0][0]).toEqual(new Function(`return (${expectedClient})`)());
      } finally {
        log.mockRestore();
      }

      // RivetKit's own client reaches the same actor: 2.0.33 prints the README's output, 2.3.19 one more.
      expect(await runRivetkitSnippet("rivetkit", port)).toBe(expectedRivetkit);
      expect(await runRivetkitSnippet("rivetkit-latest", port)).toBe("{ count: 4 }");
    } finally {
      server?.close();
      server?.closeAllConnections();
      await serverModule?.registry?.shutdown(); // no registry when the snippet stops exporting it: a failure above
    }
  });
});

describe("README: using the official RivetKit client", () => {
  // Its types: the import and createClient's signature. Untyped by a RivetKit registry, a handle takes
  // any property (an action), so its calls are checked by running it, in the test above.
  test("the snippet type-checks against the rivetkit package", () => {
    expect(rivetkitSnippet).toBeDefined();
    const file = path.join(dir, "rivetkit-client.ts");
    fs.writeFileSync(file, rivetkitSnippet!);
    expect(typeCheck([file])).toBe("");
  });
});

const api = fs.readFileSync(path.join(DOCS, "api.md"), "utf8");

describe("docs/api.md: forwardToActor examples", () => {
  const room = actor({
    state: {},
    onAuth: () => null,
    onFetch: (_c, req) => new Response(new URL(req.url).pathname + new URL(req.url).search),
  });
  const registry = setup({ use: { room } });
  afterAll(() => registry.shutdown());

  // Each route of the example, recorded by running the block against a stand-in `app`.
  const block = codeBlocks(section(api, "`forwardToActor(registry, options)`")).find((b) => b.lang === "ts")!.code;
  const routes: { method: "all" | "use"; path: string; handler: unknown }[] = [];
  const recorder = {
    all: (p: string, handler: unknown) => routes.push({ method: "all", path: p, handler }),
    use: (p: string, handler: unknown) => routes.push({ method: "use", path: p, handler }),
  };
  const js = ts.transpileModule(block, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } });
  const requireLib = (id: string) => {
    if (id !== "express-actors") throw new Error(`the example imports ${id}`);
    return expressActors;
  };
  new Function("require", "exports", "app", "registry", js.outputText)(requireLib, {}, recorder, registry);

  // `*name` is Express 5 syntax, a bare `*` Express 4's; a route without either runs on both.
  const cases = expressVersions.flatMap(({ label, express }) =>
    routes
      .filter((r) => (label === "express 5" ? !/\*(\/|$)/.test(r.path) : !/\*\w/.test(r.path)))
      .map((r) => ({ label, express, ...r })),
  );

  test("the example has routes for both Express majors", () => {
    expect(cases.map((c) => c.label)).toEqual(expect.arrayContaining(["express 4", "express 5"]));
  });

  test.each(cases)("$label, app.$method($path): the actor sees the path and the query string", async ({ express, method, path: p, handler }) => {
    const app = express();
    app[method](p, handler as RequestHandler);
    const res = await request(app).get("/rooms/lobby/a/b?x=1&y=%2F").expect(200);
    expect(res.text).toBe("/a/b?x=1&y=%2F");
  });
});

describe.each(expressVersions)("docs/api.md: mount path and /health, on $label", ({ express }) => {
  const registry = setup({ use: {} });
  afterAll(() => registry.shutdown());
  const appHealth: RequestHandler = (_req, res) => {
    res.json({ app: true });
  };

  test("mounted under a path, the router answers {mount}/health and /health stays the app's", async () => {
    const app = express();
    app.use("/registry", actorMiddleware(registry));
    app.get("/health", appHealth);
    await request(app).get("/registry/health").expect(200, { status: "ok" });
    await request(app).get("/health").expect(200, { app: true });
  });

  test("mounted at /, the router answers GET and HEAD /health before an app route registered after it", async () => {
    for (const mount of [(app: Express) => app.use(actorMiddleware(registry)), (app: Express) => app.use("/", actorMiddleware(registry))]) {
      const app = express();
      mount(app);
      app.get("/health", appHealth);
      await request(app).get("/health").expect(200, { status: "ok" });
      await request(app).head("/health").expect(200);
    }
  });

  test("mounted at /, an app route /health registered before it wins", async () => {
    const app = express();
    app.get("/health", appHealth);
    app.use(actorMiddleware(registry));
    await request(app).get("/health").expect(200, { app: true });
  });
});

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -1, -2… for repeats. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let inFence = false;
  for (const line of markdown.split("\n")) {
    if (line.startsWith("```")) inFence = !inFence;
    const heading = !inFence && /^#{1,6} (.*)$/.exec(line);
    if (!heading) continue;
    const base = heading[1].trim().toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "").replace(/ /g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

/** The targets of the markdown links of a text, outside code blocks and inline code. */
function linksOf(markdown: string): string[] {
  let inFence = false;
  const links: string[] = [];
  for (const line of markdown.split("\n")) {
    if (line.startsWith("```")) inFence = !inFence;
    if (inFence) continue;
    for (const m of line.replace(/`[^`]*`/g, "").matchAll(/\]\(([^)\s]+)\)/g)) links.push(m[1]);
  }
  return links;
}

const pages = [README, ...fs.readdirSync(DOCS).filter((f) => f.endsWith(".md")).map((f) => path.join(DOCS, f))];

describe.each(pages.map((p) => [path.relative(ROOT, p), p]))("links of %s", (_name, page) => {
  test("every relative link leads to an existing file and heading", () => {
    const broken: string[] = [];
    for (const link of linksOf(fs.readFileSync(page, "utf8"))) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(link)) continue; // https:, mailto:
      const [file, anchor] = link.split("#");
      const target = file === "" ? page : path.resolve(path.dirname(page), decodeURIComponent(file));
      if (!fs.existsSync(target)) broken.push(`${link}: no such file`);
      else if (anchor !== undefined && !anchorsOf(fs.readFileSync(target, "utf8")).has(anchor)) {
        broken.push(`${link}: no heading with that anchor in ${path.relative(ROOT, target)}`);
      }
    }
    expect(broken).toEqual([]);
  });
});

test("the docs pages other sessions extend keep their names", () => {
  for (const name of ["README.md", "api.md", "wire-protocol.md", "state-and-stores.md", "websockets.md", "browser.md",
    "authentication.md", "testing.md", "performance.md", "clusters.md"]) {
    expect(fs.existsSync(path.join(DOCS, name))).toBe(true);
  }
});
