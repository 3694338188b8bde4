import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as net from "node:net";
import * as path from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import type { CorsOptions } from "express-actors";
import { createClient } from "express-actors/client";
import { startDemo, type Demo, type DemoOptions, type DemoRegistry } from "../demo/server";
import { CHROMIUM, hasChromium, launchChromium, recordConsole, screenshot, startOtherOrigin } from "./helpers/browser-harness";

// The demo page (demo/public) in headless Chromium against the demo app (demo/server.ts), started
// in process on a random port with its own fileStore directory. Screenshots go to test-screenshots/.

if (!hasChromium && !process.env.CI) {
  // Outside CI a machine without Chromium skips these, visibly; in CI (CI set) they always run and fail instead.
  test(`browser tests skipped: no ${CHROMIUM}`, () => {
    console.warn(`browser tests skipped: no ${CHROMIUM} (apt-get install chromium to run them; in CI they fail instead)`);
  });
} else {
  jest.setTimeout(60_000);

  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const cleanups: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    for (const context of contexts.splice(0)) await context.close();
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** A fresh browser profile (its own cookies and localStorage), as a second user would have. */
  async function newPage(): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    contexts.push(context);
    return context.newPage();
  }

  async function tempStore(): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), "express-actors-e2e-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    return dir;
  }

  async function demo(options: DemoOptions): Promise<Demo> {
    const started = await startDemo({ port: 0, host: "127.0.0.1", closeGraceMs: 100, cors: false, ...options });
    cleanups.push(() => started.close());
    return started;
  }

  const text = async (page: Page, selector: string) => (await page.locator(selector).textContent())?.trim() ?? "";

  describe("the demo page in headless Chromium", () => {
    it("chats between two pages over handle.websocket, and shows a refused socket's close code", async () => {
      const app = await demo({ storeDir: await tempStore() });
      const room = `e2e-${Date.now()}`;
      const [ann, bob] = [await newPage(), await newPage()];
      for (const [page, name] of [[ann, "ann"], [bob, "bob"]] as const) {
        await page.goto(app.url + "/");
        await page.fill("#chat-room", room);
        await page.fill("#chat-name", name);
        await page.click("#chat-join-button");
        await page.locator("#chat-status.ok").waitFor();
        expect(await text(page, "#chat-status")).toBe(`connected to "${room}" as ${name}`);
      }
      await ann.locator("#chat-online", { hasText: "online: ann, bob" }).waitFor();

      await ann.fill("#chat-text", "hello from page A");
      await ann.press("#chat-text", "Enter");
      await bob.locator("#chat-messages li.message", { hasText: "hello from page A" }).waitFor();
      await bob.fill("#chat-text", "hi A, this is page B");
      await bob.click("#chat-send-button");
      await ann.locator("#chat-messages li.message", { hasText: "hi A, this is page B" }).waitFor();

      const lines = (page: Page) => page.locator("#chat-messages li.message").allTextContents();
      expect((await lines(bob)).map(withoutTime)).toEqual(["annhello from page A", "bobhi A, this is page B"]);
      expect(await lines(ann)).toEqual(await lines(bob));
      await screenshot(ann, "chat-page-a");
      await screenshot(bob, "chat-page-b");

      // The chat actor refuses the "staff" room from onWebSocket: the socket opens, then closes with 4403.
      await bob.click("#chat-forbidden");
      await bob.locator("#chat-status.bad").waitFor();
      expect(await text(bob, "#chat-status")).toBe("4403 forbidden");
      expect(await text(bob, "#chat-error")).toBe('Room "staff": refused: forbidden — close code 4403, reason "forbidden"');
      await ann.locator("#chat-messages li.notice", { hasText: "bob left" }).waitFor();
      await screenshot(bob, "chat-forbidden-room");

      // A bad name is refused by onAuth (UserError): 4400 with the error's code as the reason.
      await ann.evaluate(() => document.querySelector("#chat-name")!.removeAttribute("maxlength"));
      await ann.fill("#chat-name", "x".repeat(33));
      await ann.click("#chat-join-button");
      await ann.locator("#chat-status", { hasText: "4400 invalid_name" }).waitFor();
    });

    it("keeps the count across a server restart with fileStore", async () => {
      const storeDir = await tempStore();
      let app = await startDemo({ port: 0, host: "127.0.0.1", closeGraceMs: 100, cors: false, storeDir });
      cleanups.push(() => app.close()); // whichever instance is current at the end
      const port = app.port;
      const page = await newPage();
      await page.goto(`${app.url}/?key=restart`);
      await page.locator("#counter-value", { hasText: "0" }).waitFor();
      for (const expected of ["1", "2", "3"]) {
        await page.click("#counter-increment");
        await page.locator("#counter-value", { hasText: expected }).waitFor();
      }
      expect(await text(page, "#counter-status")).toMatch(/^POST \/increment → 200 in \d+ ms \(key "restart"\)$/);
      await screenshot(page, "counter-before-restart");

      // Stop: the HTTP server closes and registry.shutdown() saves every state.
      await app.close();
      await page.click("#counter-increment");
      await page.locator("#counter-error:not([hidden])").waitFor();
      expect(await text(page, "#counter-error")).toMatch(/^Network error: .*Failed to fetch.*\(is the server running\?\)$/);
      await screenshot(page, "counter-server-down");

      // A new process-worth of demo on the same directory and port: the reloaded page sees the saved count.
      app = await startDemo({ port, host: "127.0.0.1", closeGraceMs: 100, cors: false, storeDir });
      await page.reload();
      await page.locator("#counter-status", { hasText: "GET /count → 200" }).waitFor();
      expect(await text(page, "#counter-value")).toBe("3");
      await page.click("#counter-increment");
      await page.locator("#counter-value", { hasText: "4" }).waitFor();
      await screenshot(page, "counter-after-restart");
    });

    it("counts through the browser build of RivetKit's own client, on the actor express-actors/client reads", async () => {
      const app = await demo({ storeDir: await tempStore() });
      const page = await newPage();
      const calls: string[] = [];
      page.on("request", (request) => {
        const { pathname } = new URL(request.url());
        if (pathname.startsWith("/registry/")) calls.push(`${request.method()} ${pathname}`);
      });
      await page.goto(`${app.url}/?key=rivetkit-e2e`);
      await page.locator("#rivetkit-status", { hasText: "GET /count → 200" }).waitFor();
      expect(await text(page, "#rivetkit-value")).toBe("0");
      for (const expected of ["1", "2"]) {
        await page.click("#rivetkit-increment");
        await page.locator("#rivetkit-value", { hasText: expected }).waitFor();
      }
      expect(await text(page, "#rivetkit-status")).toMatch(/^POST \/increment → 200 in \d+ ms \(key "rivetkit-e2e"\)$/);
      expect(await page.locator("#rivetkit-error").isHidden()).toBe(true);

      // The project's own client, from Node, reads and changes the same actor...
      const counter = createClient<DemoRegistry>(`${app.url}/registry`).counter.getOrCreate(["rivetkit-e2e"]);
      expect(await (await counter.fetch("/count")).json()).toEqual({ count: 2 });
      expect(await (await counter.fetch("/increment", { method: "POST" })).json()).toEqual({ count: 3 });
      await page.click("#rivetkit-refresh");
      await page.locator("#rivetkit-value", { hasText: "3" }).waitFor();

      // ...which RivetKit's client reached through RivetKit's routes (manager API, then the gateway by
      // actor id), not through the router's actors/raw/http.
      const id = await counter.resolve();
      expect(calls).toEqual(expect.arrayContaining([
        "GET /registry/metadata",
        "PUT /registry/actors",
        `POST /registry/gateway/${id}/request/increment`,
        `GET /registry/gateway/${id}/request/count`,
      ]));
      await screenshot(page, "rivetkit-client-counter");
    });

    it("receives the SSE feed event by event through EventSource", async () => {
      const app = await demo({ storeDir: await tempStore() });
      const page = await newPage();
      await page.goto(`${app.url}/?key=feed-e2e`);
      await page.click("#feed-start");
      await page.waitForFunction(() => window.demo.feedEvents.length >= 1);
      // The feed reports the counter of the same key: a POST shows up in a later event.
      await page.click("#counter-increment");
      await page.waitForFunction(() => window.demo.feedEvents.length >= 4 && window.demo.feedEvents.some((e) => e.data.count === 1), null, {
        timeout: 15_000,
      });
      const events = await page.evaluate(() => window.demo.feedEvents);
      const arrivals = events.map((e) => e.arrivedAt);
      // One event per second, each arriving on its own, at a distinct time...
      expect(new Set(arrivals).size).toBe(arrivals.length);
      for (let i = 1; i < arrivals.length; i++) expect(arrivals[i]).toBeGreaterThan(arrivals[i - 1]);
      expect(new Set(events.map((e) => e.data.time)).size).toBe(events.length);
      // ...and each one in the page before the server even produced the next (nothing held back by
      // compression() or a buffer). The page and the server share this machine's clock.
      for (let i = 0; i + 1 < events.length; i++) expect(events[i].receivedAt).toBeLessThan(Date.parse(events[i + 1].data.time));
      expect(events[0].data.count).toBe(0);
      expect(await text(page, "#feed-status")).toBe("streaming /feed/feed-e2e/events");
      expect(await page.locator("#feed-events li").count()).toBe(events.length);
      await screenshot(page, "feed-events");
      await page.click("#feed-stop");
    });

    it("shows a raw router call (fetch + X-RivetKit-Actor-Query) and its error response", async () => {
      const app = await demo({ storeDir: await tempStore() });
      const page = await newPage();
      await page.goto(`${app.url}/`);
      await page.click("#raw-send");
      await page.locator("#raw-response", { hasText: "HTTP/1.1 200" }).waitFor();
      expect(await text(page, "#raw-request")).toContain('X-RivetKit-Actor-Query: {"getOrCreateForKey":{"name":"counter","key":["demo"]}}');
      expect(await text(page, "#raw-response")).toContain(`"count": 0`);

      await page.selectOption("#raw-preset", "missing");
      await page.click("#raw-send");
      await page.locator("#raw-response.bad", { hasText: "HTTP/1.1 404" }).waitFor();
      const response = await text(page, "#raw-response");
      expect(response).toContain("content-type: application/json");
      expect(response).toContain('"code": "actor_not_found"');
      await screenshot(page, "raw-router-call");
    });
  });

  describe("a page on another origin", () => {
    const FETCH_CHECKS = ["client bundle: handle.fetch POST /increment", "plain fetch with X-RivetKit-Actor-Query: GET /count"];
    const WS_CHECK = "client bundle: handle.websocket";

    /** Runs the other origin's page against a demo whose cors option is built from that origin. */
    async function crossOrigin(cors: (otherOrigin: string) => CorsOptions | false, shot: string) {
      const other = await startOtherOrigin();
      cleanups.push(() => other.close());
      const app = await demo({ storeDir: await tempStore(), cors: cors(other.url) });
      const page = await newPage();
      const consoleLines = recordConsole(page);
      await page.goto(other.pageUrl(app.url));
      await page.locator("body[data-done]").waitFor({ timeout: 15_000 });
      await screenshot(page, shot);
      return { checks: await page.evaluate(() => window.checks), consoleLines, origin: other.url };
    }

    it("reaches the router with the cors option (preflight answered, Access-Control-Allow-Origin set, socket accepted)", async () => {
      const { checks, consoleLines } = await crossOrigin((origin) => ({ origin: ["https://unrelated.example", origin] }), "cors-allowed");
      expect(checks[FETCH_CHECKS[0]]).toEqual({ ok: true, text: '200 {"count":1}' });
      expect(checks[FETCH_CHECKS[1]]).toEqual({ ok: true, text: '200 {"count":1}' });
      expect(checks[WS_CHECK]).toEqual({ ok: true, text: "open; first message: history" });
      expect(consoleLines.filter((line) => /CORS/.test(line))).toEqual([]);
    });

    it.each([
      { label: "cors off", cors: () => false as const, shot: "cors-off" },
      { label: "cors for other origins only", cors: () => ({ origin: "https://elsewhere.example" }), shot: "cors-origin-not-listed" },
    ])("is refused by the browser with $label (a visible CORS error), and its socket by the server", async ({ cors, shot }) => {
      const { checks, consoleLines, origin } = await crossOrigin(cors, shot);
      for (const label of FETCH_CHECKS) expect(checks[label]).toEqual({ ok: false, text: "TypeError: Failed to fetch" });
      // Chromium says why in the console, once per refused request.
      const blocked = consoleLines.filter((line) => line.includes(`from origin '${origin}' has been blocked by CORS policy`));
      expect(blocked).toHaveLength(2);
      // CORS does not cover sockets and the browser sends cookies with them: the server checks the
      // Origin itself (SPEC §11), so the socket opens and closes with 4403 forbidden_origin.
      expect(checks[WS_CHECK]).toEqual({ ok: false, text: "Error: closed 4403 forbidden_origin" });
    });

    it("refuses a socket from another host on the same port (localhost vs 127.0.0.1) unless cors lists it", async () => {
      const results: Record<string, unknown> = {};
      for (const withCors of [false, true]) {
        const port = await freePort();
        const started = await demo({ storeDir: await tempStore(), port, cors: withCors && { origin: `http://localhost:${port}` } });
        const page = await newPage();
        // The demo page itself, loaded as localhost: its own origin's socket opens, 127.0.0.1's is another origin.
        await page.goto(`http://localhost:${started.port}/`);
        results[withCors ? "with cors" : "without cors"] = await page.evaluate(async (port) => {
          const open = (host: string) =>
            new Promise<string>((resolve) => {
              const query = encodeURIComponent(JSON.stringify({ getOrCreateForKey: { name: "chat", key: ["origin"] } }));
              const params = encodeURIComponent(JSON.stringify({ name: "visitor" }));
              const ws = new WebSocket(`ws://${host}:${port}/registry/actors/raw/websocket/`, [
                "rivetkit",
                `query.${query}`,
                `conn_params.${params}`,
                "encoding.json",
              ]);
              ws.onmessage = () => {
                ws.close(1000);
                resolve("accepted");
              };
              ws.onclose = (e) => resolve(`closed ${e.code} ${e.reason}`);
            });
          return { localhost: await open("localhost"), loopback: await open("127.0.0.1") };
        }, started.port);
      }
      expect(results).toEqual({
        "without cors": { localhost: "accepted", loopback: "closed 4403 forbidden_origin" },
        "with cors": { localhost: "accepted", loopback: "accepted" },
      });
    });
  });
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** "12:01:02annhello" → "annhello": the chat line without its clock. */
function withoutTime(line: string): string {
  return line.replace(/^\d{1,2}:\d{2}:\d{2}/, "");
}
