import { actor, actorMiddleware, forwardWebSocketToActor, setup } from "express-actors";
import { expressVersions } from "./helpers/servers";
import { connectActor, getOrCreate, startWsApp, within, WsClient, type WsApp } from "./helpers/ws-harness";

// SPEC §11: an upgrade whose Origin is not the request's own origin closes with 4403 forbidden_origin
// (after the upgrade), unless cors.origin lists it; no Origin is not checked; `trust proxy` decides
// whether X-Forwarded-Host / X-Forwarded-Proto make up the request's own origin. On the router,
// the RivetKit gateway (SPEC §10) and forwardWebSocketToActor.

const ALLOWED = "https://app.example";
let authCalls = 0;

const room = actor({
  state: {},
  onAuth: () => {
    authCalls++;
    return null;
  },
  onWebSocket: (c, ws) => ws.send(`welcome to ${c.key[0]}`),
});

/** The actor id the RivetKit gateway entries open sockets to (resolved in beforeAll). */
let gatewayId = "";
const RIVET = ["rivet", "rivet_encoding.bare"];

type Connect = (app: WsApp, headers?: Record<string, string>, options?: { origin?: string; protocolVersion?: number }) => WsClient;

/** The four entry points: the router and forwardWebSocketToActor, each without and with `cors`. */
const ENTRIES: Array<{ entry: string; cors: boolean; connect: Connect }> = [
  {
    entry: "the router",
    cors: false,
    connect: (app, headers, options) => connectActor(app, getOrCreate("room", ["router"]), { options: { headers, ...options } }),
  },
  {
    entry: "the router",
    cors: true,
    connect: (app, headers, options) =>
      connectActor(app, getOrCreate("room", ["router"]), { mount: "/shared", options: { headers, ...options } }),
  },
  {
    entry: "the RivetKit gateway",
    cors: false,
    connect: (app, headers, options) => new WsClient(`${app.wsUrl}/registry/gateway/${gatewayId}/websocket/`, RIVET, { headers, ...options }),
  },
  {
    entry: "the RivetKit gateway",
    cors: true,
    connect: (app, headers, options) => new WsClient(`${app.wsUrl}/shared/gateway/${gatewayId}/websocket/`, RIVET, { headers, ...options }),
  },
  {
    entry: "forwardWebSocketToActor",
    cors: false,
    connect: (app, headers, options) => new WsClient(`${app.wsUrl}/rooms/forward`, [], { headers, ...options }),
  },
  {
    entry: "forwardWebSocketToActor",
    cors: true,
    connect: (app, headers, options) => new WsClient(`${app.wsUrl}/shared-rooms/forward`, [], { headers, ...options }),
  },
];

function mountEntries(a: any, registry: ReturnType<typeof setup>) {
  a.use("/shared", actorMiddleware(registry, { cors: { origin: ["https://unrelated.example", ALLOWED] } }));
  a.ws("/rooms/:room", forwardWebSocketToActor(registry, { name: "room", key: (req: any) => [req.params.room] }));
  a.ws(
    "/shared-rooms/:room",
    forwardWebSocketToActor(registry, { name: "room", key: (req: any) => [req.params.room], cors: { origin: ALLOWED } }),
  );
}

async function expectWelcome(client: WsClient) {
  await within(client.opened, "open");
  const [first] = await within(client.received(1), "welcome");
  expect(first.text).toMatch(/^welcome to /);
  client.ws.close();
}

/** Opened, then closed with 4403 forbidden_origin before onAuth ran. */
async function expectForbiddenOrigin(client: WsClient) {
  const calls = authCalls;
  await within(client.opened, "open before refusal");
  expect(await within(client.closed, "close")).toEqual({ code: 4403, reason: "forbidden_origin" });
  expect(client.messages).toEqual([]);
  expect(authCalls).toBe(calls);
}

describe.each(expressVersions)("the WebSocket origin check on $label", ({ express }) => {
  const registry = setup({ use: { room } });
  let app: WsApp;

  beforeAll(async () => {
    app = await startWsApp({ express, registry, before: (a) => mountEntries(a, registry) });
    gatewayId = await registry.createServerClient().room.getOrCreate(["gateway"]).resolve();
  });
  afterAll(async () => {
    await app.close();
    await registry.shutdown();
  });

  describe.each(ENTRIES)("on $entry (cors: $cors)", ({ connect, cors }) => {
    it("lets an upgrade without Origin through (a non-browser client)", async () => {
      await expectWelcome(connect(app));
    });

    it("lets a page of the request's own origin through", async () => {
      await expectWelcome(connect(app, {}, { origin: app.url }));
    });

    it("compares scheme, host and port as a URL parser normalizes them", async () => {
      await expectWelcome(connect(app, { host: "Example.COM" }, { origin: "http://example.com" }));
      await expectWelcome(connect(app, { host: "example.com:80" }, { origin: "http://example.com" }));
    });

    it.each([
      ["another host", (app: WsApp) => app.url.replace("127.0.0.1", "localhost")],
      ["another port", (app: WsApp) => app.url.replace(/:\d+$/, ":1")],
      ["another scheme", (app: WsApp) => app.url.replace("http:", "https:")],
      ["a sandboxed page (null)", () => "null"],
      ["garbage", () => "not an origin"],
      ["two origins", (app: WsApp) => `${app.url}, ${app.url}`],
    ])("refuses %s with 4403 forbidden_origin, after the upgrade and before onAuth", async (_what, origin) => {
      await expectForbiddenOrigin(connect(app, {}, { origin: origin(app) }));
    });

    it("checks Sec-WebSocket-Origin, which hybi-08 clients send instead", async () => {
      await expectForbiddenOrigin(connect(app, {}, { protocolVersion: 8, origin: "http://evil.example" }));
      await expectWelcome(connect(app, {}, { protocolVersion: 8, origin: app.url }));
    });

    it(cors ? "lets an origin listed in cors.origin through" : "refuses every other origin without cors", async () => {
      const client = connect(app, {}, { origin: ALLOWED });
      if (cors) await expectWelcome(client);
      else await expectForbiddenOrigin(client);
      await expectForbiddenOrigin(connect(app, {}, { origin: "https://app.example:8443" }));
    });
  });
});

describe.each(expressVersions)("X-Forwarded-Host / X-Forwarded-Proto and trust proxy on $label", ({ express }) => {
  const registry = setup({ use: { room } });
  const apps: Record<"trusted" | "untrusted", WsApp> = {} as never;
  const forwarded = { "x-forwarded-host": "public.example", "x-forwarded-proto": "https" };

  beforeAll(async () => {
    for (const [name, trust] of [["trusted", true], ["untrusted", false]] as const) {
      apps[name] = await startWsApp({
        express,
        registry,
        before: (a) => {
          a.set("trust proxy", trust);
          mountEntries(a, registry);
        },
      });
    }
    gatewayId = await registry.createServerClient().room.getOrCreate(["gateway"]).resolve();
  });
  afterAll(async () => {
    await Promise.all(Object.values(apps).map((app) => app.close()));
    await registry.shutdown();
  });

  describe.each(ENTRIES.filter((e) => !e.cors))("on $entry", ({ connect }) => {
    it("with trust proxy, the forwarded host and scheme are the request's own origin", async () => {
      await expectWelcome(connect(apps.trusted, forwarded, { origin: "https://public.example" }));
      await expectForbiddenOrigin(connect(apps.trusted, forwarded, { origin: apps.trusted.url }));
      await expectForbiddenOrigin(connect(apps.trusted, forwarded, { origin: "http://public.example" }));
    });

    it("without trust proxy, the forwarded headers count for nothing", async () => {
      await expectForbiddenOrigin(connect(apps.untrusted, forwarded, { origin: "https://public.example" }));
      await expectWelcome(connect(apps.untrusted, forwarded, { origin: apps.untrusted.url }));
    });
  });
});
