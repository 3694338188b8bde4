import express5 from "express";
import request from "supertest";
import { actor, forwardToActor, forwardWebSocketToActor, setup } from "express-actors";
import { captureErrorLog, delay, waitFor } from "./helpers/actor-harness";
import { rawRequest } from "./helpers/raw-http";
import { RawWebSocket } from "./helpers/raw-ws";
import { expressVersions } from "./helpers/servers";
import { actorProtocols, connectActor, getOrCreate, startWsApp, within, WsClient, type WsApp } from "./helpers/ws-harness";

// Upgrade routing through Express 4 and 5 with express-ws: mount paths, servers, middleware in
// front, other app.ws routes, and apps without express-ws.

/** Echoes every message with the URL it was opened on, so tests can see where it landed. */
const echo = actor({
  state: { opened: 0 },
  onAuth: () => null,
  onWebSocket: (c, ws, { request }) => {
    c.state.opened++;
    ws.addEventListener("message", (e) => ws.send(`${e.data}@${new URL(request.url).pathname}`));
  },
});
const hits: string[] = [];
const httpActor = actor({
  state: {},
  onAuth: () => null,
  onFetch: (_c, req) => {
    hits.push(req.url);
    return new Response("fetched");
  },
  onWebSocket: () => {},
});
/** Records what its sockets see, per key, after an async setup. */
const journals = new Map<string, string[]>();
const journal = actor({
  state: {},
  onAuth: () => null,
  onWebSocket: async (c, ws, { request }) => {
    const lines: string[] = [`url ${request.url} ${ws.url}`];
    journals.set(c.key[0], lines);
    await delay(30);
    ws.addEventListener("open", () => lines.push("open"));
    ws.addEventListener("message", (e) => lines.push(`message ${e.data}`));
    ws.addEventListener("close", (e) => lines.push(`close ${(e as CloseEvent).code}`));
  },
});
/** Answers each message with what the actor saw of its socket. */
const mirror = actor({
  state: {},
  onAuth: () => null,
  onFetch: (_c, req) => Response.json({ url: req.url }),
  onWebSocket: (_c, ws, { request }) => {
    ws.addEventListener("message", (e) => ws.send(JSON.stringify({ data: e.data, url: request.url, wsUrl: ws.url })));
  },
});
const registry = setup({ use: { echo, httpActor, journal, mirror } });
afterAll(() => registry.shutdown());

let unique = 0;
const key = () => [`x${++unique}`];

/** Opens a socket, sends `text` right after open, resolves with the first reply. */
async function roundTrip(client: WsClient, text = "hi"): Promise<string> {
  await within(client.opened, "open");
  client.send(text);
  const [reply] = await client.received(1);
  client.ws.close();
  return reply.text;
}

describe("the ws that express-ws brings", () => {
  const expected = process.env.EXPRESS_ACTORS_TEST_WS === "8" ? "8" : "7";
  it(`is ws ${expected} in this run (7 as a user's install has it, 8 when an app forces it)`, async () => {
    const app = await startWsApp({
      express: express5,
      registry,
      before: (server) => server.ws("/which", (ws: { pause?: unknown; send(data: string): void }) => ws.send(typeof ws.pause === "function" ? "8" : "7")),
    });
    try {
      const client = new WsClient(`${app.wsUrl}/which`);
      const [reply] = await client.received(1);
      expect(reply.text).toBe(expected);
      client.ws.close();
    } finally {
      await app.close();
    }
  });
});

describe.each(expressVersions)("$label", ({ express, label }) => {
  describe.each([
    { mount: "/registry", ownServer: false },
    { mount: "/", ownServer: false },
    { mount: "/api/v1/actors-here", ownServer: true },
  ])("mounted at $mount (own server: $ownServer)", ({ mount, ownServer }) => {
    let app: WsApp;
    beforeAll(async () => {
      app = await startWsApp({ express, registry, mount, ownServer });
    });
    afterAll(() => app.close());

    it("reaches the actor with the path and query below the mount point", async () => {
      const base = mount === "/" ? "" : mount;
      const client = connectActor(app, getOrCreate("echo", key()), { mount: base, path: "/room/1?x=2" });
      expect(await roundTrip(client)).toBe("hi@/room/1");
    });

    it("accepts a 1 MiB message and closes with 1009 on a larger one (the default limit)", async () => {
      const base = mount === "/" ? "" : mount;
      const client = connectActor(app, getOrCreate("echo", key()), { mount: base });
      await within(client.opened, "open");
      client.send("x".repeat(1024 * 1024 - 2));
      expect((await client.received(1))[0].text).toHaveLength(1024 * 1024);
      client.send(Buffer.alloc(1024 * 1024 + 1));
      expect(await within(client.closed, "close")).toEqual({ code: 1009, reason: "message_too_big" });
    });

    it("routes an absolute-form upgrade target, with the same request.url as plain HTTP", async () => {
      const base = mount === "/" ? "" : mount;
      const query = `X-RivetKit-Actor-Query: ${JSON.stringify(getOrCreate("mirror", key()))}`;
      const target = `${app.url}${base}/actors/raw/websocket/abs/path?x=1`;
      const socket = await RawWebSocket.open(app.url, target, [query]);
      try {
        expect(socket.handshake.status).toBe(101);
        socket.sendText("hi");
        expect(JSON.parse(await within(socket.nextText(), "the echo"))).toEqual({
          data: "hi",
          url: `${app.url}/abs/path?x=1`,
          wsUrl: `${app.wsUrl}/abs/path?x=1`,
        });
      } finally {
        socket.close();
      }
      const http = await rawRequest(app.url, [`GET ${target.replace("websocket", "http")} HTTP/1.1`, `Host: ${new URL(app.url).host}`, query, "", ""].join("\r\n"));
      expect(JSON.parse(http.body.toString()).url).toBe(`${app.url}/abs/path?x=1`);
    });

    it("answers a plain GET on the WebSocket route with 426 JSON", async () => {
      const base = mount === "/" ? "" : mount;
      const res = await request(app.url).get(`${base}/actors/raw/websocket/x`);
      expect(res.status).toBe(426);
      expect(res.headers["content-type"]).toMatch(/^application\/json/);
      expect(res.body.code).toBe("upgrade_required");
    });
  });

  it("works inside a Router mounted under a path with params", async () => {
    const app = await startWsApp({
      express,
      registry,
      mount: "/unused",
      before: (a) => {
        const router = express.Router();
        router.use("/actors-api", (actorMiddlewareOf(registry)));
        a.use("/t/:tenant", router);
      },
    });
    try {
      const client = connectActor(app, getOrCreate("echo", key()), { mount: "/t/acme/actors-api", path: "/deep?q" });
      expect(await roundTrip(client)).toBe("hi@/deep");
    } finally {
      await app.close();
    }
  });

  it("keeps messages sent right after open behind an async middleware", async () => {
    const app = await startWsApp({
      express,
      registry,
      before: (a) =>
        a.use(async (_req: unknown, _res: unknown, next: () => void) => {
          await delay(100);
          next();
        }),
    });
    try {
      const client = connectActor(app, getOrCreate("echo", key()));
      client.ws.once("open", () => {
        for (let i = 0; i < 10; i++) client.send(`m${i}`);
      });
      const replies = await client.received(10);
      expect(replies.map((m) => m.text)).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}@/`));
      client.ws.close();
    } finally {
      await app.close();
    }
  });

  it("delivers open, early messages and an early close in order behind async middleware and an async onWebSocket", async () => {
    const app = await startWsApp({
      express,
      registry,
      before: (a) =>
        a.use(async (_req: unknown, _res: unknown, next: () => void) => {
          await delay(50);
          next();
        }),
    });
    try {
      const k = key();
      const client = connectActor(app, getOrCreate("journal", k));
      client.ws.once("open", () => {
        client.send("a");
        client.send("b");
        client.ws.close(4000);
      });
      await within(client.closed, "close");
      await waitFor(() => journals.get(k[0])?.at(-1) === "close 4000", "the server's close event");
      expect(journals.get(k[0])!.slice(1)).toEqual(["open", "message a", "message b", "close 4000"]);
    } finally {
      await app.close();
    }
  });

  it("builds https/wss URLs from X-Forwarded-* when the app trusts the proxy", async () => {
    const app = await startWsApp({ express, registry, before: (a) => a.set("trust proxy", true) });
    try {
      const k = key();
      const client = connectActor(app, getOrCreate("journal", k), {
        path: "/x?y=1",
        options: { headers: { "X-Forwarded-Proto": "https", "X-Forwarded-Host": "example.com" } },
      });
      await client.opened;
      await waitFor(() => journals.has(k[0]), "the socket");
      expect(journals.get(k[0])![0]).toBe("url https://example.com/x?y=1 wss://example.com/x?y=1");
      client.ws.close();
    } finally {
      await app.close();
    }
  });

  describe("next to other routes", () => {
    let app: WsApp;
    beforeAll(async () => {
      app = await startWsApp({
        express,
        registry,
        before: (a) => {
          a.ws("/plain-echo", (ws: import("ws").WebSocket) => {
            ws.on("message", (data: Buffer) => ws.send(`plain:${data.toString()}`));
          });
          a.use("/fwd", forwardToActor(registry, { name: "mirror", key: () => ["fwd"] }));
          a.ws("/fws/:room", forwardWebSocketToActor(registry, { name: "mirror", key: (req) => [req.params.room] }));
          a.use("/guarded", (req: { ws?: unknown }, res: { status(n: number): { end(): void } }, next: () => void) =>
            req.ws ? res.status(401).end() : next(),
          );
        },
      });
      // Mounted after `before`, so /guarded's refusal runs first.
      app.app.use("/guarded", actorMiddlewareOf(registry));
    });
    afterAll(() => app.close());

    it("leaves another app.ws route alone: its messages flow at once, even when it is offered rivetkit", async () => {
      for (const protocols of [[], ["rivetkit"], actorProtocols(getOrCreate("echo", key()))]) {
        const client = new WsClient(`${app.wsUrl}/plain-echo`, protocols);
        await within(client.opened, "open");
        client.send("ping");
        expect((await within(client.received(1, 3000), "echo from the plain route"))[0].text).toBe("plain:ping");
        client.ws.close();
      }
    });

    it("gives forwarded routes the path without the origin of an absolute-form target", async () => {
      const host = new URL(app.url).host;
      const socket = await RawWebSocket.open(app.url, `http://${host}/fws/r1?x=1`);
      try {
        expect(socket.handshake.status).toBe(101);
        socket.sendText("hi");
        expect(JSON.parse(await within(socket.nextText(), "the echo"))).toMatchObject({
          url: `${app.url}/fws/r1?x=1`,
          wsUrl: `${app.wsUrl}/fws/r1?x=1`,
        });
      } finally {
        socket.close();
      }
      const http = await rawRequest(app.url, `GET http://${host}/fwd/a/b?x=1 HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
      expect(JSON.parse(http.body.toString()).url).toBe(`${app.url}/a/b?x=1`);
    });

    it("closes promptly when a middleware in front refuses the upgrade", async () => {
      const client = connectActor(app, getOrCreate("echo", key()), { mount: "/guarded" });
      await within(client.opened, "open");
      expect((await within(client.closed, "close within 3 s", 3000)).code).toBe(1005);
    });

    it("closes promptly when no route takes an upgrade that looks like an actor upgrade", async () => {
      const client = connectActor(app, getOrCreate("echo", key()), { mount: "/nowhere" });
      await within(client.opened, "open");
      expect((await within(client.closed, "close within 3 s", 3000)).code).toBe(1005);
    });

    it("does not run onFetch for an upgrade to the HTTP route", async () => {
      hits.length = 0;
      const client = new WsClient(`${app.wsUrl}/registry/actors/raw/http/x`, [], {
        headers: { "X-RivetKit-Actor-Query": JSON.stringify(getOrCreate("httpActor", key())) },
      });
      await within(client.opened, "open");
      expect((await within(client.closed, "close within 3 s", 3000)).code).toBe(1005);
      expect(hits).toEqual([]);
    });
  });

  if (label === "express 5") {
    it("serves router.ws routes after expressWs(app).applyTo(express.Router.prototype)", async () => {
      const app = await startWsApp({
        express,
        registry,
        before: (a, instance) => {
          instance.applyTo(express5.Router.prototype);
          const router = express5.Router();
          (router as unknown as { ws(path: string, h: (ws: import("ws").WebSocket) => void): void }).ws("/r", (ws) =>
            ws.on("message", (data: Buffer) => ws.send(`router:${data.toString()}`)),
          );
          a.use("/sub", router);
        },
      });
      try {
        const client = new WsClient(`${app.wsUrl}/sub/r`);
        await client.opened;
        client.send("x");
        expect((await client.received(1))[0].text).toBe("router:x");
        client.ws.close();
        expect(await roundTrip(connectActor(app, getOrCreate("echo", key())))).toBe("hi@/");
      } finally {
        await app.close();
      }
    });
  }
});

describe("an app without express-ws", () => {
  let app: WsApp;
  beforeAll(async () => {
    app = await startWsApp({
      express: express5,
      registry,
      withoutExpressWs: true,
      before: (a) => a.get("/upgrade-aware", (req: { headers: Record<string, string> }, res: { send(s: string): void }) =>
        res.send(`plain request, upgrade: ${req.headers.upgrade}`),
      ),
    });
  });
  afterAll(() => app.close());

  it("answers an upgrade to the actor route with an HTTP error at once, logging once that expressWs is missing", async () => {
    const log = captureErrorLog();
    try {
      for (let i = 0; i < 2; i++) {
        const client = connectActor(app, getOrCreate("echo", key()));
        await expect(within(client.opened, "an answer", 3000)).rejects.toThrow(/HTTP 501/);
      }
      await waitFor(() => log.lines.length > 0, "the log line");
      expect(log.lines).toHaveLength(1);
      expect(log.lines[0]).toMatch(/expressWs\(app/);
    } finally {
      log.restore();
    }
  });

  it("still answers HTTP actor requests, and lets other upgrade requests reach the app as Node does", async () => {
    const res = await request(app.url)
      .get("/registry/actors/raw/http/x")
      .set("X-RivetKit-Actor-Query", JSON.stringify(getOrCreate("httpActor", key())));
    expect(res.text).toBe("fetched");
    const upgrade = await request(app.url).get("/upgrade-aware").set("Connection", "Upgrade").set("Upgrade", "h2c");
    expect(upgrade.text).toBe("plain request, upgrade: h2c");
  });
});

function actorMiddlewareOf(reg: typeof registry) {
  // Imported lazily so the describe blocks above read as the user's code would.
  return (require("express-actors") as typeof import("express-actors")).actorMiddleware(reg);
}
