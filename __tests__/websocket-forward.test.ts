import express5 from "express";
import { actor, forwardToActor, forwardWebSocketToActor, setup, Unauthorized } from "express-actors";
import { captureErrorLog, delay } from "./helpers/actor-harness";
import { expressVersions } from "./helpers/servers";
import { startWsApp, within, WsClient, type WsApp } from "./helpers/ws-harness";

// SPEC §1 "Forwarding existing routes": app.ws(route, forwardWebSocketToActor(...)) on Express 4 and 5.

interface AuthCall {
  intents: string[];
  params: unknown;
  url: string;
}

const authCalls: AuthCall[] = [];

const room = actor({
  createState: (_c, input: unknown) => ({ input: input ?? null, joined: 0 }),
  onAuth: ({ request, intents, params }) => {
    authCalls.push({ intents: [...intents].sort(), params, url: request.url });
    if ((params as { token?: string } | undefined)?.token === "bad") throw new Unauthorized();
    return { token: (params as { token?: string } | undefined)?.token ?? null };
  },
  onFetch: () => new Response("http"),
  onWebSocket: (c, ws, { request, auth }) => {
    c.state.joined++;
    ws.send(JSON.stringify({ key: c.key, url: request.url, wsUrl: ws.url, auth: auth ?? "<undefined>", input: c.state.input, joined: c.state.joined }));
    ws.addEventListener("message", (e) => ws.send(`echo:${e.data}`));
  },
});

describe.each(expressVersions)("forwardWebSocketToActor on $label", ({ express, label }) => {
  const registry = setup({ use: { room } });
  let app: WsApp;

  beforeAll(async () => {
    app = await startWsApp({
      express,
      registry,
      before: (a, instance) => {
        const wild = label === "express 5" ? "*rest" : "*";
        // An HTTP forward on an overlapping pattern must pass upgrades on to the app.ws routes below.
        a.all(`/rooms/:room/${wild}`, forwardToActor(registry, { name: "room", key: (req) => [req.params.room] }));
        a.ws(
          "/rooms/:room/socket",
          forwardWebSocketToActor(registry, {
            name: "room",
            key: (req: any) => [req.params.room],
            params: (req: any) => ({ token: req.query.token }),
            input: () => "via forward",
          }),
        );
        a.ws("/open/:room", forwardWebSocketToActor(registry, { name: "room", key: (req: any) => req.params.room, auth: "skip" }));
        a.ws(
          "/custom/:room",
          forwardWebSocketToActor(registry, { name: "room", key: (req: any) => [req.params.room], path: () => "/inside?a=1" }),
        );
        a.ws(
          "/small/:room",
          forwardWebSocketToActor(registry, { name: "room", key: (req: any) => [req.params.room], maxWebSocketMessageSize: 16 }),
        );
        a.ws("/bad-key", forwardWebSocketToActor(registry, { name: "room", key: () => [1 as unknown as string] }));
        a.ws("/key-throws", forwardWebSocketToActor(registry, {
          name: "room",
          key: () => {
            throw new Error("key secret");
          },
        }));
        a.use("/slow", async (_req: unknown, _res: unknown, next: () => void) => {
          await delay(100);
          next();
        });
        a.ws("/slow/:room", forwardWebSocketToActor(registry, { name: "room", key: (req: any) => [req.params.room], auth: "skip" }));

        const router = express.Router();
        if (label === "express 5") instance.applyTo(express5.Router.prototype);
        else instance.applyTo(express.Router as any);
        (router as any).ws("/s/:room", forwardWebSocketToActor(registry, { name: "room", key: (req: any) => [req.params.room], auth: "skip" }));
        a.use("/api", router);
      },
    });
  });
  afterAll(async () => {
    await app.close();
    await registry.shutdown();
  });

  async function firstMessage(path: string) {
    const client = new WsClient(app.wsUrl + path, ["v1"]);
    await within(client.opened, "open");
    const [hello] = await client.received(1);
    return { client, hello: JSON.parse(hello.text) };
  }

  it("runs onAuth with the route's params, gets-or-creates by key, and hands the URL and auth on", async () => {
    authCalls.length = 0;
    const { client, hello } = await firstMessage("/rooms/r1/socket?token=abc");
    expect(authCalls).toEqual([
      { intents: ["create", "get", "websocket"], params: { token: "abc" }, url: `${app.url}/rooms/r1/socket?token=abc` },
    ]);
    expect(hello).toEqual({
      key: ["r1"],
      url: `${app.url}/rooms/r1/socket?token=abc`,
      wsUrl: `${app.wsUrl}/rooms/r1/socket?token=abc`,
      auth: { token: "abc" },
      input: "via forward",
      joined: 1,
    });
    expect(client.ws.protocol).toBe("v1");
    client.send("x");
    expect((await client.received(2))[1].text).toBe("echo:x");
    client.ws.close();
    const again = await firstMessage("/rooms/r1/socket?token=abc");
    expect(again.hello.joined).toBe(2);
    again.client.ws.close();
  });

  it("closes with 4401 when onAuth refuses", async () => {
    const client = new WsClient(`${app.wsUrl}/rooms/r2/socket?token=bad`);
    await client.opened;
    expect(await within(client.closed, "close")).toEqual({ code: 4401, reason: "unauthorized" });
  });

  it("skips onAuth with auth: 'skip' (auth is undefined)", async () => {
    authCalls.length = 0;
    const { client, hello } = await firstMessage("/open/r3");
    expect(authCalls).toEqual([]);
    expect(hello.auth).toBe("<undefined>");
    expect(hello.key).toEqual(["r3"]);
    client.ws.close();
  });

  it("uses path(req) for the actor's URL", async () => {
    const { client, hello } = await firstMessage("/custom/r4");
    expect(hello.url).toBe(`${app.url}/inside?a=1`);
    expect(hello.wsUrl).toBe(`${app.wsUrl}/inside?a=1`);
    client.ws.close();
  });

  it("uses the URL below the mount point inside a Router", async () => {
    const { client, hello } = await firstMessage("/api/s/r5?z=1");
    expect(hello.url).toBe(`${app.url}/s/r5?z=1`);
    expect(hello.key).toEqual(["r5"]);
    client.ws.close();
  });

  it("keeps messages sent right after open behind an async middleware", async () => {
    const client = new WsClient(`${app.wsUrl}/slow/r6`);
    client.ws.once("open", () => {
      for (let i = 0; i < 5; i++) client.send(`m${i}`);
    });
    const got = await client.received(6);
    expect(got.slice(1).map((m) => m.text)).toEqual(["echo:m0", "echo:m1", "echo:m2", "echo:m3", "echo:m4"]);
    client.ws.close();
  });

  it("applies maxWebSocketMessageSize: 1009 message_too_big past it", async () => {
    const client = new WsClient(`${app.wsUrl}/small/r7`);
    await client.received(1);
    client.send("x".repeat(16));
    expect((await client.received(2))[1].text).toBe(`echo:${"x".repeat(16)}`);
    client.send("x".repeat(17));
    expect(await within(client.closed, "close")).toEqual({ code: 1009, reason: "message_too_big" });
  });

  it("closes with 4400 for a bad key and 1011 (logged, not shown) when key() throws", async () => {
    const bad = new WsClient(`${app.wsUrl}/bad-key`);
    await bad.opened;
    expect(await within(bad.closed, "close")).toEqual({ code: 4400, reason: "invalid_query" });
    const log = captureErrorLog();
    try {
      const throws = new WsClient(`${app.wsUrl}/key-throws`);
      await throws.opened;
      expect(await within(throws.closed, "close")).toEqual({ code: 1011, reason: "internal_error" });
      expect(log.lines.join("\n")).toContain("key secret");
    } finally {
      log.restore();
    }
  });

  it("fails at setup for a missing name/key or a name the registry does not have", () => {
    expect(() => forwardWebSocketToActor(registry, { name: "nope", key: () => [] })).toThrow(/no actor named "nope"/);
    expect(() => forwardWebSocketToActor(registry, { name: "room" } as any)).toThrow(TypeError);
  });
});
