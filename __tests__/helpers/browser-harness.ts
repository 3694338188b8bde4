import { existsSync, mkdirSync, readFileSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";

// Headless Chromium for the end-to-end tests: Debian's /usr/bin/chromium, never a downloaded one.

declare global {
  interface Window {
    /** What demo/public/app.js keeps for the tests. */
    demo: {
      /** arrivedAt: performance.now(); receivedAt: Date.now(), comparable with the server's `time` (same machine). */
      feedEvents: Array<{ arrivedAt: number; receivedAt: number; data: { stream: number; count: number; time: string } }>;
      /** Every text the chat's status line showed, oldest first. */
      chatStatuses: string[];
      /** How often the chat got back into its room after losing it. */
      chatRejoins: number;
    };
    /** The other-origin page's results. */
    checks: Record<string, Check>;
  }
}

// E2E_CHROMIUM points elsewhere (another system Chromium; or a missing path, to see the skip).
export const CHROMIUM = process.env.E2E_CHROMIUM ?? "/usr/bin/chromium";
export const hasChromium = existsSync(CHROMIUM);

const ROOT = path.resolve(__dirname, "..", "..");
export const SCREENSHOT_DIR = path.join(ROOT, "test-screenshots");
const BUNDLE = path.join(ROOT, "dist", "browser", "client.js");

export function launchChromium(): Promise<Browser> {
  if (!hasChromium) throw new Error(`${CHROMIUM} is missing (CI installs it in .ci/run: apt-get install -y chromium)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
}

/** Saves a full-page screenshot as test-screenshots/<name>.png; returns the path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** Collects the page's console messages and uncaught errors, for assertions and failure messages. */
export function recordConsole(page: Page): string[] {
  const lines: string[] = [];
  page.on("console", (message) => lines.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (err) => lines.push(`pageerror: ${err.message}`));
  return lines;
}

export interface OtherOrigin {
  /** e.g. http://127.0.0.1:41234 — a different origin from the demo (another port). */
  url: string;
  /** The page that calls `api` (the demo's origin) with the client bundle and with plain fetch. */
  pageUrl(api: string): string;
  close(): Promise<void>;
}

/**
 * A second tiny server, on another port and so another origin, serving a page that uses the
 * browser bundle (its own copy, as a site embedding the client would) against the demo's router.
 * The page records each check in `window.checks` and in a list, then sets `body[data-done]`.
 */
export async function startOtherOrigin(): Promise<OtherOrigin> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname === "/client.js") {
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" });
      res.end(readFileSync(BUNDLE));
    } else if (url.pathname === "/") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(OTHER_ORIGIN_PAGE);
    } else {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    pageUrl: (api) => `${url}/?api=${encodeURIComponent(api)}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface Check {
  ok: boolean;
  text: string;
}

const OTHER_ORIGIN_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Another origin</title>
<style>
  body { font: 15px system-ui, sans-serif; margin: 24px; color: #1f2328; background: #f4f5f7; }
  main { max-width: 860px; background: #fff; border: 1px solid #d8dee4; border-radius: 10px; padding: 18px 22px; }
  h1 { font-size: 1.3rem; margin: 0 0 6px; }
  code { background: #f0f2f4; padding: 1px 4px; border-radius: 4px; font-size: 0.88em; }
  ol { padding-left: 20px; }
  li { margin: 8px 0; }
  .ok::before { content: "✔ "; color: #1a7f37; }
  .fail::before { content: "✘ "; color: #cf222e; }
  .fail .text { color: #cf222e; }
  .note { color: #656d76; font-size: 0.85rem; }
  .text { display: block; font-family: ui-monospace, monospace; font-size: 0.82rem; color: #656d76; overflow-wrap: anywhere; }
</style>
</head>
<body>
<main>
  <h1>A page on another origin</h1>
  <p>This page (<code id="origin"></code>) calls the demo's router at <code id="api"></code>.</p>
  <ol id="checks"></ol>
  <p class="note">A <code>TypeError: Failed to fetch</code> while the server is up is the browser refusing the
  response; scripts are not told why, the devtools console says "blocked by CORS policy".</p>
</main>
<script type="module">
  import { createClient } from "/client.js";
  const api = new URL(location.href).searchParams.get("api");
  document.getElementById("origin").textContent = location.origin;
  document.getElementById("api").textContent = api;
  window.checks = {};
  async function check(label, run) {
    let result;
    try {
      result = { ok: true, text: await run() };
    } catch (err) {
      result = { ok: false, text: err instanceof Error ? err.name + ": " + err.message : String(err) };
    }
    window.checks[label] = result;
    const item = document.createElement("li");
    item.className = result.ok ? "ok" : "fail";
    item.dataset.check = label;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = result.text;
    item.append(label, text);
    document.getElementById("checks").append(item);
  }
  const client = createClient(api + "/registry");
  await check("client bundle: handle.fetch POST /increment", async () => {
    const res = await client.counter.getOrCreate(["cross-origin"]).fetch("/increment", { method: "POST" });
    return res.status + " " + (await res.text());
  });
  await check("plain fetch with X-RivetKit-Actor-Query: GET /count", async () => {
    const res = await fetch(api + "/registry/actors/raw/http/count", {
      headers: { "X-RivetKit-Actor-Query": JSON.stringify({ getOrCreateForKey: { name: "counter", key: ["cross-origin"] } }) },
    });
    return res.status + " " + (await res.text());
  });
  await check("client bundle: handle.websocket", async () => {
    const ws = await client.chat.getOrCreate(["cross-origin"], { params: { name: "visitor" } }).websocket();
    const first = await new Promise((resolve, reject) => {
      ws.addEventListener("message", (e) => resolve(JSON.parse(e.data)), { once: true });
      ws.addEventListener("close", (e) => reject(new Error("closed " + e.code + " " + e.reason)), { once: true });
    });
    ws.close(1000);
    return "open; first message: " + first.type;
  });
  document.body.dataset.done = "true";
</script>
</body>
</html>
`;
