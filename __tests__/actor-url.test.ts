import { actor, forwardToActor, setup } from "express-actors";
import { createClient } from "express-actors/client";
import { RawConnection } from "./helpers/raw-http";
import { RawWebSocket } from "./helpers/raw-ws";
import { expressVersions } from "./helpers/servers";
import { startWsApp, within, type WsApp } from "./helpers/ws-harness";

// SPEC §2: request.url is the incoming origin + exactly one leading slash + the path, whatever the
// path holds. Dot segments, encoded dots, backslashes and slashes are generated in every order and
// sent through each way in: the router, forwardToActor's default path, a raw WebSocket upgrade
// and both clients.

const SEGMENTS = ["", ".", "..", "%2e", "%2E", "%2e%2e", "%2E%2e", ".%2e", "%2e.", "...", "a", "evil.com", "@evil.com", ":80"];
const SEPARATORS = ["/", "\\", "//", "/\\", "\\\\", "/./", "/../"];
const SUFFIXES = ["", "", "", "?q=//evil.com", "?", "#//evil.com", "/"];

/** mulberry32: the same sequence on every run, so a failure names a path that fails again. */
function random(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The paths of the issue, then `count` generated ones of up to five segments. */
function hostilePaths(count: number, seed = 14): string[] {
  const known = [".//evil.com", "..//evil.com", "%2e//evil.com", "%2E%2E//evil.com", "./\\evil.com", "a/..//evil.com", "x/%2e%2e//"];
  const next = random(seed);
  const pick = <T>(list: T[]) => list[Math.floor(next() * list.length)];
  const generated = Array.from({ length: count }, () => {
    let path = next() < 0.5 ? pick(SEPARATORS) : "";
    const segments = 1 + Math.floor(next() * 5);
    for (let i = 0; i < segments; i++) path += (i > 0 ? pick(SEPARATORS) : "") + pick(SEGMENTS);
    return path + pick(SUFFIXES);
  });
  return [...known, ...generated];
}

/** The URL's origin is `origin` and its pathname starts with exactly one slash. */
function expectContained(url: string, origin: string, path: string) {
  const parsed = new URL(url);
  expect({ path, origin: parsed.origin, leading: /^\/(?!\/)/.test(parsed.pathname) }).toEqual({ path, origin, leading: true });
}

const seen = actor({
  state: {},
  onAuth: () => null,
  onFetch: (_c, request) => Response.json({ url: request.url }),
  onWebSocket: (_c, ws, { request }) => ws.send(JSON.stringify({ url: request.url, wsUrl: ws.url })),
});
const QUERY = `X-RivetKit-Actor-Query: ${JSON.stringify({ getOrCreateForKey: { name: "seen", key: ["k"] } })}`;

describe.each(expressVersions)("request.url on $label", ({ express }) => {
  const registry = setup({ use: { seen } });
  let server: WsApp;

  beforeAll(async () => {
    server = await startWsApp({
      express,
      registry,
      before: (app) => app.use("/fwd", forwardToActor(registry, { name: "seen", key: () => ["k"] })),
    });
  });

  afterAll(async () => {
    await server.close();
    await registry.shutdown();
  });

  /** The actor's request.url for one raw request on a keep-alive connection. */
  async function fetchUrl(conn: RawConnection, target: string): Promise<string> {
    conn.send(`GET ${target} HTTP/1.1\r\nHost: h:1\r\n${QUERY}\r\n\r\n`);
    const res = await conn.read();
    expect({ target, status: res.status }).toEqual({ target, status: 200 });
    return (JSON.parse(res.body.toString()) as { url: string }).url;
  }

  it("never leaves the origin nor starts with two slashes, through the router and forwardToActor", async () => {
    const conn = await RawConnection.open(server.url);
    try {
      for (const path of hostilePaths(400)) {
        expectContained(await fetchUrl(conn, `/registry/actors/raw/http/${path}`), "http://h:1", path);
        expectContained(await fetchUrl(conn, `/fwd/${path}`), "http://h:1", path);
      }
    } finally {
      conn.close();
    }
  });

  it("never leaves the origin nor starts with two slashes, through a WebSocket upgrade", async () => {
    const origin = new URL(server.url).origin;
    for (const path of hostilePaths(60, 7)) {
      const socket = await RawWebSocket.open(server.url, `/registry/actors/raw/websocket/${path}`, [QUERY]);
      try {
        expect({ path, status: socket.handshake.status }).toEqual({ path, status: 101 });
        const { url, wsUrl } = JSON.parse(await within(socket.nextText(), `the actor's view of ${path}`));
        expectContained(url, origin, path);
        expectContained(wsUrl, origin.replace("http", "ws"), path);
        expect(wsUrl).toBe(url.replace("http", "ws"));
      } finally {
        socket.close();
      }
    }
  });

  it("keeps a dot segment followed by trailing spaces or controls inside the route (a URL parser trims them)", async () => {
    const client = createClient<typeof registry>(server.url + "/registry");
    for (const [path, seen] of [
      [".. ", "/..%20"],
      ["a/.. ", "/a/..%20"],
      ["%2e%2e\u0000", "/%2e%2e%00"],
      ["..\u001f ", "/..%1F%20"],
      ["x?q= ", "/x?q=%20"],
    ]) {
      const res = await client.seen.getOrCreate(["k"]).fetch(path);
      expect({ path, status: res.status }).toEqual({ path, status: 200 });
      expect({ path, url: ((await res.json()) as { url: string }).url }).toEqual({ path, url: server.url + seen });
    }
  });

  it("is the same through createClient as through the server client, and stays in the actor's route", async () => {
    const client = createClient<typeof registry>(server.url + "/registry");
    const inProcess = registry.createServerClient();
    // A URL parser deletes tabs and newlines, so they can hide a slash or a dot segment; no HTTP
    // request line carries them, but a client's path can.
    const controls = ["\t/evil.com", "/\n/evil.com", ".\t//evil.com", "%2\te//evil.com", "a/.\r.//evil.com"];
    for (const path of [...controls, ...hostilePaths(150, 3)]) {
      const viaHttp = await client.seen.getOrCreate(["k"]).fetch(path);
      expect({ path, status: viaHttp.status }).toEqual({ path, status: 200 });
      const { url } = (await viaHttp.json()) as { url: string };
      expectContained(url, new URL(server.url).origin, path);

      const local = (await (await inProcess.seen.getOrCreate(["k"]).fetch(path)).json()) as { url: string };
      expectContained(local.url, "http://actor", path);
      expect({ path, local: new URL(local.url).pathname }).toEqual({ path, local: new URL(url).pathname });

      const socket = await inProcess.seen.getOrCreate(["k"]).websocket(path);
      const view = await new Promise<{ url: string; wsUrl: string }>((resolve) =>
        socket.addEventListener("message", (e) => resolve(JSON.parse(String(e.data))), { once: true }),
      );
      socket.close();
      expectContained(view.url, "http://actor", path);
      expectContained(view.wsUrl, "ws://actor", path);
    }
  });
});
