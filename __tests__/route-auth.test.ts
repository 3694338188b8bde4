import type { Request as ExpressRequest } from "express";
import {
  actor,
  Forbidden,
  forwardToActor,
  forwardWebSocketToActor,
  setup,
  Unauthorized,
  UserError,
  type AuthArgs,
} from "express-actors";
import { createClient } from "express-actors/client";
import { captureErrorLog, delay } from "./helpers/actor-harness";
import { expressVersions } from "./helpers/servers";
import { connectActor, getOrCreate, startWsApp, within, WsClient, type WsApp } from "./helpers/ws-harness";

// SPEC §4 "Trusted data from a route": a route that has authenticated the user hands the actor
// `auth: (req) => authData` instead of params, and onAuth learns the request's `source`, so the
// router's caller-chosen X-RivetKit-Conn-Params can no longer impersonate a signed-in user.

type SessionRequest = ExpressRequest & { session: { user?: string } };

/** The app's own sessions, as a cookie-session middleware would find them. */
const SESSIONS: Record<string, { user: string }> = { "sid-alice": { user: "alice" } };
const ALICE = { cookie: "sid=sid-alice" };
const FORGED = { "X-RivetKit-Conn-Params": JSON.stringify({ user: "admin" }) };

const vaultSources: Array<AuthArgs["source"]> = [];
const created: string[] = [];

/** The privileged actor: only the app's routes may say who the user is. */
const vault = actor({
  onCreate: (c) => {
    created.push(c.key[0]);
  },
  onAuth: ({ params, source }) => {
    vaultSources.push(source);
    if (source === "router") throw new Forbidden("The vault is only reachable through the app's routes");
    // source "route": params come from the route's params(req), not from the caller.
    return { user: (params as { user?: string } | undefined)?.user ?? null };
  },
  onFetch: (c, _req, { auth }) => Response.json({ key: c.key, auth: auth ?? "<undefined>" }),
  onWebSocket: (c, ws, { auth }) => ws.send(JSON.stringify({ key: c.key, auth: auth ?? "<undefined>" })),
});

/** No onAuth at all: reachable only through routes that vouch for the caller. */
const gate = actor({
  onCreate: (c) => {
    created.push(c.key[0]);
  },
  onFetch: (c, _req, { auth }) => Response.json({ key: c.key, auth: auth ?? "<undefined>" }),
  onWebSocket: (c, ws, { auth }) => ws.send(JSON.stringify({ key: c.key, auth: auth ?? "<undefined>" })),
});

function session(req: SessionRequest, _res: unknown, next: () => void) {
  const sid = /(?:^|;\s*)sid=([^;]+)/.exec(req.headers.cookie ?? "")?.[1];
  req.session = { ...(sid === undefined ? undefined : SESSIONS[sid]) };
  next();
}

function signedIn(req: SessionRequest) {
  const { user } = req.session;
  if (!user) throw new Unauthorized("Sign in first");
  return { user };
}

async function signedInLater(req: SessionRequest) {
  await delay(20);
  return signedIn(req);
}

/** The route's auth function for gate: refuses as the `x-refuse` header says, async when `x-async` is set. */
function gateAuth(req: SessionRequest) {
  const decide = () => {
    switch (req.headers["x-refuse"]) {
      case "unauthorized":
        throw new Unauthorized();
      case "forbidden":
        throw new Forbidden();
      case "user":
        throw new UserError("Pick a room first", { code: "no_room" });
      case "crash":
        throw new Error("session store secret");
    }
    return { via: "gate" };
  };
  return req.headers["x-async"] ? delay(10).then(decide) : decide();
}

const REFUSALS = [
  { refuse: "unauthorized", status: 401, code: "unauthorized", close: 4401 },
  { refuse: "forbidden", status: 403, code: "forbidden", close: 4403 },
  { refuse: "user", status: 400, code: "no_room", close: 4400 },
  { refuse: "crash", status: 500, code: "internal_error", close: 1011 },
];

describe.each(expressVersions)("trusted route data on $label", ({ express }) => {
  const registry = setup({ use: { vault, gate } });
  let app: WsApp;

  beforeAll(async () => {
    app = await startWsApp({
      express,
      registry,
      before: (a) => {
        a.use(session);
        const key = (req: SessionRequest) => [String(req.params.id)];
        a.use("/vault/:id", forwardToActor(registry, { name: "vault", key, auth: signedIn }));
        a.ws("/vault/:id/socket", forwardWebSocketToActor(registry, { name: "vault", key, auth: signedIn }));
        a.use("/async-vault/:id", forwardToActor(registry, { name: "vault", key, auth: signedInLater }));
        a.ws("/async-vault/:id/socket", forwardWebSocketToActor(registry, { name: "vault", key, auth: signedInLater }));
        const params = (req: SessionRequest) => ({ user: req.session.user });
        a.use("/vault-run/:id", forwardToActor(registry, { name: "vault", key, params, auth: "run" }));
        a.ws("/vault-run/:id/socket", forwardWebSocketToActor(registry, { name: "vault", key, params }));
        a.use("/gate/:id", forwardToActor(registry, { name: "gate", key, auth: gateAuth }));
        a.ws("/gate/:id/socket", forwardWebSocketToActor(registry, { name: "gate", key, auth: gateAuth }));
      },
    });
  });
  afterAll(async () => {
    await app.close();
    await registry.shutdown();
  });
  beforeEach(() => {
    vaultSources.length = 0;
    created.length = 0;
  });

  const routerFetch = (key: string, headers: Record<string, string> = {}) =>
    fetch(`${app.url}/registry/actors/raw/http/secret`, {
      headers: { "X-RivetKit-Actor-Query": JSON.stringify(getOrCreate("vault", [key])), ...headers },
    });

  async function firstMessage(client: WsClient) {
    const [hello] = await client.received(1);
    return JSON.parse(hello.text);
  }

  describe("the forged identity", () => {
    it("HTTP: the router with forged conn params gets 403; the route hands the session's user as auth", async () => {
      const forged = await routerFetch("v1", FORGED);
      expect(forged.status).toBe(403);
      expect(await forged.json()).toMatchObject({ code: "forbidden" });

      const route = await fetch(`${app.url}/vault/v1/secret`, { headers: { ...ALICE, ...FORGED } });
      expect(route.status).toBe(200);
      expect(await route.json()).toEqual({ key: ["v1"], auth: { user: "alice" } });

      const anonymous = await fetch(`${app.url}/vault/v1/secret`, { headers: FORGED });
      expect(anonymous.status).toBe(401);
      expect(await anonymous.json()).toMatchObject({ code: "unauthorized", message: "Sign in first" });
    });

    it("WebSocket: the router with forged conn params closes 4403; the route hands the session's user as auth", async () => {
      const forged = connectActor(app, getOrCreate("vault", ["v2"]), { params: { user: "admin" } });
      expect(await within(forged.closed, "forged close")).toEqual({ code: 4403, reason: "forbidden" });
      expect(forged.messages).toEqual([]);

      const route = new WsClient(`${app.wsUrl}/vault/v2/socket`, [], { headers: { ...ALICE, ...FORGED } });
      expect(await firstMessage(route)).toEqual({ key: ["v2"], auth: { user: "alice" } });
      route.ws.close();

      const anonymous = new WsClient(`${app.wsUrl}/vault/v2/socket`, [], { headers: FORGED });
      expect(await within(anonymous.closed, "anonymous close")).toEqual({ code: 4401, reason: "unauthorized" });
    });
  });

  it("never calls onAuth for a route with an auth function, and gets-or-creates the actor", async () => {
    expect((await fetch(`${app.url}/vault/v3/a`, { headers: ALICE })).status).toBe(200);
    expect((await fetch(`${app.url}/vault/v3/b`, { headers: ALICE })).status).toBe(200);
    const socket = new WsClient(`${app.wsUrl}/vault/v4/socket`, [], { headers: ALICE });
    expect(await firstMessage(socket)).toEqual({ key: ["v4"], auth: { user: "alice" } });
    socket.ws.close();
    expect(vaultSources).toEqual([]);
    expect(created).toEqual(["v3", "v4"]);
  });

  it("accepts an async auth function, and maps its rejection like onAuth's (401 / 4401)", async () => {
    const ok = await fetch(`${app.url}/async-vault/v5/x`, { headers: ALICE });
    expect(await ok.json()).toEqual({ key: ["v5"], auth: { user: "alice" } });
    const socket = new WsClient(`${app.wsUrl}/async-vault/v5/socket`, [], { headers: ALICE });
    expect(await firstMessage(socket)).toEqual({ key: ["v5"], auth: { user: "alice" } });
    socket.ws.close();

    const refused = await fetch(`${app.url}/async-vault/v6/x`);
    expect(refused.status).toBe(401);
    expect(await refused.json()).toMatchObject({ code: "unauthorized" });
    const refusedSocket = new WsClient(`${app.wsUrl}/async-vault/v6/socket`);
    expect(await within(refusedSocket.closed, "close")).toEqual({ code: 4401, reason: "unauthorized" });
    expect(vaultSources).toEqual([]);
    expect(created).toEqual(["v5"]);
  });

  it('tells onAuth the source: "router" for the router (HTTP, WebSocket, resolve), "route" for forwarded routes', async () => {
    expect((await routerFetch("v7")).status).toBe(403);
    const routerSocket = connectActor(app, getOrCreate("vault", ["v7"]));
    expect((await within(routerSocket.closed, "close")).code).toBe(4403);
    const client = createClient<typeof registry>(app.url + "/registry");
    await expect(client.vault.getOrCreate(["v7"]).resolve()).rejects.toMatchObject({ code: "forbidden" });

    const route = await fetch(`${app.url}/vault-run/v7/x`, { headers: { ...ALICE, ...FORGED } });
    expect(await route.json()).toEqual({ key: ["v7"], auth: { user: "alice" } });
    const routeSocket = new WsClient(`${app.wsUrl}/vault-run/v7/socket`, [], { headers: ALICE });
    expect(await firstMessage(routeSocket)).toEqual({ key: ["v7"], auth: { user: "alice" } });
    routeSocket.ws.close();

    expect(vaultSources).toEqual(["router", "router", "router", "route", "route"]);
  });

  describe.each([false, true])("an auth function that throws (async: %s)", (async) => {
    const headers = (refuse: string): Record<string, string> => (async ? { "x-refuse": refuse, "x-async": "1" } : { "x-refuse": refuse });

    it.each(REFUSALS)("$refuse → HTTP $status $code, WebSocket $close; nothing is created", async ({ refuse, status, code, close }) => {
      const log = captureErrorLog();
      try {
        const key = `${refuse}-${async}`;
        const res = await fetch(`${app.url}/gate/${key}/x`, { headers: headers(refuse) });
        expect(res.status).toBe(status);
        const body = await res.json();
        expect(body.code).toBe(code);
        const socket = new WsClient(`${app.wsUrl}/gate/${key}/socket`, [], { headers: headers(refuse) });
        expect(await within(socket.closed, "close")).toEqual({ code: close, reason: code });
        expect(created).toEqual([]);
        if (refuse === "crash") {
          expect(body.message).not.toContain("secret");
          expect(log.lines.join("\n")).toContain("session store secret");
        }
      } finally {
        log.restore();
      }
    });
  });

  it("reaches an actor without onAuth when the route vouches; the router still gets 403", async () => {
    const res = await fetch(`${app.url}/gate/g1/x`);
    expect(await res.json()).toEqual({ key: ["g1"], auth: { via: "gate" } });
    const router = await fetch(`${app.url}/registry/actors/raw/http/x`, {
      headers: { "X-RivetKit-Actor-Query": JSON.stringify(getOrCreate("gate", ["g1"])) },
    });
    expect(router.status).toBe(403);
  });

  it("refuses an unknown auth option at setup", () => {
    const key = () => ["k"];
    expect(() => forwardToActor(registry, { name: "vault", key, auth: "none" as never })).toThrow(
      /`auth` must be "run", "skip" or a function/,
    );
    expect(() => forwardWebSocketToActor(registry, { name: "vault", key, auth: true as never })).toThrow(TypeError);
  });
});
