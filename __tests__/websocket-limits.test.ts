import type { Socket } from "node:net";
import { actor, forwardWebSocketToActor, setup, Unauthorized } from "express-actors";
import { deferred, waitFor, type Deferred } from "./helpers/actor-harness";
import { expressVersions } from "./helpers/servers";
import { actorProtocols, connectActor, getOrCreate, startWsApp, within, WsClient, type WsApp } from "./helpers/ws-harness";

// SPEC §11 limits on the WebSocket side: query, conn params and key sizes (4400 invalid_query),
// sockets per actor (1013 too_many_sockets), and the messages held while onAuth and onWebSocket's
// setup are still running (the socket stops reading instead of buffering without bound).

/** onAuth waits for this gate when the params say so. */
let gate: Deferred<"pass" | "refuse"> | undefined;

const room = actor({
  state: {},
  createVars: () => ({ open: 0 }),
  onAuth: async (_args, params) => {
    const { wait, fail } = (params ?? {}) as { wait?: boolean; fail?: boolean };
    if (wait && gate && (await gate.promise) === "refuse") throw new Unauthorized();
    return { fail: fail === true };
  },
  onWebSocket: (c, ws, { auth }) => {
    if (auth?.fail) throw new Unauthorized();
    c.vars.open++;
    ws.addEventListener("close", () => c.vars.open--);
    let expected = 0;
    ws.addEventListener("message", (event) => {
      const text = String(event.data);
      if (text === "count?") ws.send(`counted ${expected}`);
      else if (!text.startsWith(`${expected}:`)) ws.send(`out of order at ${expected}: ${text.slice(0, 20)}`);
      else expected++;
    });
    ws.send(`open ${c.vars.open}`);
  },
});

async function expectClose(client: WsClient, code: number, reason: string) {
  await within(client.opened, "open before the close");
  expect(await within(client.closed, `close ${code}`)).toEqual({ code, reason });
}

async function expectOpen(client: WsClient) {
  const [first] = await within(client.received(1), "the first message");
  expect(first.text).toMatch(/^open \d+$/);
  return client;
}

describe.each(expressVersions)("WebSocket limits on $label", ({ express }) => {
  const registry = setup({ use: { room } });
  let app: WsApp;
  /** Server-side TCP sockets of upgrades, by the client's `x-test-id` header. */
  const upgrades = new Map<string, Socket>();

  beforeAll(async () => {
    app = await startWsApp({
      express,
      registry,
      middleware: {
        maxQuerySize: 300,
        maxConnParamsSize: 100,
        maxKeyParts: 2,
        maxSocketsPerActor: 2,
        maxPendingWebSocketMessages: 100,
        maxPendingWebSocketBytes: 64 * 1024,
      },
      before: (a) => {
        a.use((req: any, _res: unknown, next: () => void) => {
          const id = req.headers["x-test-id"];
          if (req.ws && typeof id === "string") upgrades.set(id, req.socket);
          next();
        });
        a.ws("/rooms/:room", forwardWebSocketToActor(registry, { name: "room", key: (req: any) => req.params.room.split("."), maxKeyParts: 3, maxSocketsPerActor: 1 }));
      },
    });
  });
  afterAll(async () => {
    await app.close();
    await registry.shutdown();
  });

  describe("query, conn params and key sizes: 4400 invalid_query", () => {
    it("refuses a query entry over maxQuerySize (measured once decoded) and accepts one at it", async () => {
      const padded = (length: number) => {
        const base = { getOrCreateForKey: { name: "room", key: ["q"], input: "" } };
        const pad = length - JSON.stringify(base).length;
        return { getOrCreateForKey: { name: "room", key: ["q"], input: "é".repeat(pad) } };
      };
      await expectOpen(new WsClient(`${app.wsUrl}/registry/actors/raw/websocket/`, actorProtocols(padded(300))));
      await expectClose(new WsClient(`${app.wsUrl}/registry/actors/raw/websocket/`, actorProtocols(padded(301))), 4400, "invalid_query");
    });

    it("refuses conn params over maxConnParamsSize, in the protocol entry or the header", async () => {
      await expectClose(connectActor(app, getOrCreate("room", ["p"]), { params: { pad: "x".repeat(100) } }), 4400, "invalid_query");
      const header = { "x-rivetkit-actor-query": JSON.stringify(getOrCreate("room", ["p"])), "x-rivetkit-conn-params": JSON.stringify({ pad: "x".repeat(100) }) };
      await expectClose(new WsClient(`${app.wsUrl}/registry/actors/raw/websocket/`, [], { headers: header }), 4400, "invalid_query");
      await expectOpen(connectActor(app, getOrCreate("room", ["p"]), { params: { pad: "x".repeat(80) } }));
    });

    it("refuses keys over maxKeyParts, on the router, the RivetKit gateway and forwardWebSocketToActor", async () => {
      await expectClose(connectActor(app, getOrCreate("room", ["a", "b", "c"])), 4400, "invalid_query");
      const gateway = (key: string) => `${app.wsUrl}/registry/gateway/room/websocket/?rvt-method=getOrCreate&rvt-key=${key}`;
      await expectClose(new WsClient(gateway("g,b,c"), ["rivet", "rivet_encoding.json"]), 4400, "invalid_query");
      await expectOpen(new WsClient(gateway("g,b"), ["rivet", "rivet_encoding.json"]));
      const params = "rivet_conn_params." + encodeURIComponent(JSON.stringify({ pad: "x".repeat(100) }));
      await expectClose(new WsClient(gateway("g,b"), ["rivet", "rivet_encoding.json", params]), 4400, "invalid_query");
      await expectClose(new WsClient(`${app.wsUrl}/rooms/a.b.c.d`), 4400, "invalid_query");
      await expectOpen(new WsClient(`${app.wsUrl}/rooms/k.a.b`));
    });
  });

  describe("maxSocketsPerActor: 1013 too_many_sockets", () => {
    let warnings: jest.SpyInstance;
    beforeEach(() => {
      warnings = jest.spyOn(console, "warn").mockImplementation(() => {});
    });
    afterEach(() => warnings.mockRestore());

    it("refuses one socket more than the limit, per actor, and takes one again once a socket closed", async () => {
      const [a, b] = [connectActor(app, getOrCreate("room", ["full"])), connectActor(app, getOrCreate("room", ["full"]))];
      await expectOpen(a);
      await expectOpen(b);
      for (let i = 0; i < 2; i++) await expectClose(connectActor(app, getOrCreate("room", ["full"])), 1013, "too_many_sockets");
      // Said once per activation in the log, not once per refusal.
      expect(warnings.mock.calls.map((call) => call.join(" "))).toEqual([
        expect.stringMatching(/^\[express-actors actor=room actorId=[0-9a-f-]+\] refusing WebSockets over maxSocketsPerActor \(2\) with 1013 too_many_sockets$/),
      ]);
      await expectOpen(connectActor(app, getOrCreate("room", ["other"])));

      a.ws.close();
      await within(a.closed, "a closed");
      const again = connectActor(app, getOrCreate("room", ["full"]));
      const [first] = await within(again.received(1), "open after a freed its place");
      expect(first.text).toBe("open 2");
      b.ws.close();
      again.ws.close();
    });

    it("frees the place of a socket that onWebSocket refused", async () => {
      for (let i = 0; i < 3; i++) {
        await expectClose(connectActor(app, getOrCreate("room", ["refused"]), { params: { fail: true } }), 4401, "unauthorized");
      }
      const sockets = [connectActor(app, getOrCreate("room", ["refused"])), connectActor(app, getOrCreate("room", ["refused"]))];
      for (const socket of sockets) await expectOpen(socket);
      for (const socket of sockets) socket.ws.close();
    });

    it("applies forwardWebSocketToActor's own maxSocketsPerActor", async () => {
      const first = await expectOpen(new WsClient(`${app.wsUrl}/rooms/solo`));
      await expectClose(new WsClient(`${app.wsUrl}/rooms/solo`), 1013, "too_many_sockets");
      first.ws.close();
    });
  });

  describe("messages sent before the actor is ready", () => {
    afterEach(() => {
      gate?.resolve("pass");
      gate = undefined;
    });

    /** Sends `count` numbered frames of `size` bytes while onAuth waits; returns the client and its server socket. */
    async function flood(id: string, count: number, size: number) {
      gate = deferred();
      const client = connectActor(app, getOrCreate("room", [id]), { params: { wait: true }, options: { headers: { "x-test-id": id } } });
      await within(client.opened, "open");
      for (let i = 0; i < count; i++) client.send(`${i}:`.padEnd(size, "x"));
      await waitFor(() => upgrades.has(id), "the upgrade's server socket");
      return { client, server: upgrades.get(id)! };
    }

    /** The server stops reading once the held messages pass a limit: it reads a bounded amount, then stalls. */
    async function expectStalled(server: Socket, limit: number) {
      await waitFor(() => server.bytesRead >= limit, `the server to read ${limit} bytes`);
      let last = -1;
      await waitFor(
        async () => {
          const read = server.bytesRead;
          const still = read === last;
          last = read;
          await new Promise((resolve) => setTimeout(resolve, 100));
          return still;
        },
        "the server to stop reading",
        10_000,
      );
      // Past the limit, ws parses at most the rest of what one read brought (64 KiB).
      expect(server.bytesRead).toBeLessThan(limit + 192 * 1024);
    }

    it("holds at most maxPendingWebSocketBytes, then stops reading; every message arrives, in order, once onAuth returns", async () => {
      const { client, server } = await flood("bytes", 2048, 4096); // 8 MiB
      await expectStalled(server, 64 * 1024);
      gate!.resolve("pass");
      await within(client.received(1), "open");
      await waitFor(() => client.ws.bufferedAmount === 0, "the client to send everything", 10_000);
      client.send("count?");
      const [, counted] = await within(client.received(2), "the count", 10_000);
      expect(counted.text).toBe("counted 2048");
      client.ws.close();
    });

    it("holds at most maxPendingWebSocketMessages small messages, then stops reading", async () => {
      const { client, server } = await flood("count", 200_000, 8); // 1.1 MiB of 14-byte frames
      await expectStalled(server, 100 * 14);
      gate!.resolve("pass");
      await waitFor(() => client.ws.bufferedAmount === 0, "the client to send everything", 20_000);
      client.send("count?");
      const [, counted] = await within(client.received(2), "the count", 20_000);
      expect(counted.text).toBe("counted 200000");
      client.ws.close();
    });

    it("closes a refused socket at once even while it is not reading", async () => {
      const { client, server } = await flood("refused", 2048, 4096);
      await expectStalled(server, 64 * 1024);
      gate!.resolve("refuse");
      // The closing handshake needs the client's close frame: reading resumes for it.
      expect(await within(client.closed, "4401 without waiting for ws's 30 s close timer")).toEqual({ code: 4401, reason: "unauthorized" });
    });
  });
});
