import { createServer } from "node:net";
import pino from "pino";
import request from "supertest";
import { actor, actorMiddleware, setup } from "express-actors";
import { redisStore } from "express-actors/stores/redis";
import { actorQuery, RAW, waitFor } from "./helpers/actor-harness";
import { expressVersions } from "./helpers/servers";
import { connectActor, getOrCreate, startWsApp, within } from "./helpers/ws-harness";

// Issue 15, logs: setup({ logger }) takes a pino logger; c.log and the library's own lines are
// its children with `actor` and `actorId`, and no line carries state, auth data, params or bodies.

const SECRET = {
  state: "state-secret-7f3a",
  params: "params-secret-91c2",
  body: "body-secret-4d8e",
  auth: "auth-secret-e6b0",
  wsParams: "ws-params-secret-5b17",
};

const vault = actor({
  state: { kept: "" },
  onAuth: ({ request }, params) => {
    if ((params as { fail?: boolean } | undefined)?.fail) throw new Error("the auth backend is down");
    return { user: "u1", bearer: request.headers.get("authorization") ?? "" };
  },
  onFetch: async (c, req) => {
    const path = new URL(req.url).pathname;
    const body = await req.text();
    c.state.kept = `${SECRET.state}:${body}`;
    c.log.info({ path }, "handled");
    if (path === "/throw") throw new Error("the handler failed");
    if (path === "/bad") return "not a response" as unknown as Response;
    return Response.json({ ok: true });
  },
  onWebSocket: (c, ws) => {
    c.log.warn("socket opened");
    ws.addEventListener("message", () => {
      throw new Error("the listener failed");
    });
  },
  onStop: () => {
    throw new Error("onStop failed");
  },
});

/** A pino logger at debug level writing JSON lines into memory. */
function capturedPino() {
  const lines: string[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => void lines.push(line) });
  return { logger, lines, records: () => lines.map((line) => JSON.parse(line) as Record<string, any>) };
}

function expectNoSecrets(lines: string[]) {
  expect(lines.length).toBeGreaterThan(0);
  for (const line of lines) {
    for (const secret of Object.values(SECRET)) expect(line).not.toContain(secret);
  }
}

describe.each(expressVersions)("pino logs on $label", ({ express }) => {
  it("gives c.log and the library's lines actor fields, and never logs state, auth, params or bodies", async () => {
    const { logger, lines, records } = capturedPino();
    const registry = setup({ use: { vault }, logger });
    const app = await startWsApp({ express, registry });
    const query = actorQuery("vault", ["v1"]);
    const send = (path: string, params: unknown) =>
      request(app.url)
        .post(`${RAW}${path}`)
        .set("X-RivetKit-Actor-Query", query)
        .set("X-RivetKit-Conn-Params", JSON.stringify(params))
        .set("Authorization", `Bearer ${SECRET.auth}`)
        .set("Content-Type", "text/plain")
        .send(SECRET.body);
    try {
      expect((await send("/store", { token: SECRET.params })).status).toBe(200);
      expect((await send("/throw", { token: SECRET.params })).body.code).toBe("internal_error");
      expect((await send("/bad", { token: SECRET.params })).body.code).toBe("invalid_fetch_response");
      expect((await send("/store", { token: SECRET.params, fail: true })).body.code).toBe("internal_error");
      const id = (await registry.createServerClient().vault.get(["v1"]).resolve()) as string;

      const client = connectActor(app, getOrCreate("vault", ["v1"]), { params: { token: SECRET.wsParams } });
      await within(client.opened, "the socket to open");
      client.send(`message with ${SECRET.body}`);
      expect((await within(client.closed, "the socket to close")).code).toBe(1011);
      await registry.shutdown();

      const byMsg = (msg: string) => records().filter((r) => r.msg === msg);
      const actorFields = { actor: "vault", actorId: id };
      expect(byMsg("handled")).toEqual(
        ["/store", "/throw", "/bad"].map((path) => expect.objectContaining({ level: 30, ...actorFields, path })),
      );
      expect(byMsg("onFetch threw")).toEqual([
        expect.objectContaining({ level: 50, ...actorFields, err: expect.objectContaining({ message: "the handler failed" }) }),
      ]);
      expect(byMsg("onFetch returned string instead of a Response")).toEqual([expect.objectContaining({ level: 50, ...actorFields })]);
      expect(byMsg('onAuth of "vault" threw')).toEqual([
        expect.objectContaining({ level: 50, actor: "vault", err: expect.objectContaining({ message: "the auth backend is down" }) }),
      ]);
      expect(byMsg("socket opened")).toEqual([expect.objectContaining({ level: 40, ...actorFields })]);
      expect(byMsg("a WebSocket listener threw")).toEqual([
        expect.objectContaining({ level: 50, ...actorFields, err: expect.objectContaining({ message: "the listener failed" }) }),
      ]);
      expect(byMsg("onStop threw")).toEqual([expect.objectContaining({ level: 50, ...actorFields })]);
      expectNoSecrets(lines);
    } finally {
      await registry.shutdown();
      await app.close();
    }
  });
});

describe("the default logger", () => {
  it("writes console lines tagged with the same fields", async () => {
    const spy = jest.spyOn(console, "error").mockImplementation(() => {});
    const info = jest.spyOn(console, "info").mockImplementation(() => {});
    const registry = setup({ use: { vault } });
    try {
      const handle = registry.createServerClient().vault.getOrCreate(["console"]);
      expect((await handle.fetch("/throw", { method: "POST", body: SECRET.body })).status).toBe(500);
      const id = await handle.resolve();
      const [line] = spy.mock.calls.filter((args) => args.includes("onFetch threw:"));
      expect(line[0]).toBe(`[express-actors actor=vault actorId=${id}]`);
      expect(line[line.length - 1]).toEqual(expect.objectContaining({ message: "the handler failed" }));
      expectNoSecrets(spy.mock.calls.map((args) => args.map((a) => (a instanceof Error ? a.stack : String(a))).join(" ")));
    } finally {
      await registry.shutdown();
      spy.mockRestore();
      info.mockRestore();
    }
  });
});

describe("setup({ logger })", () => {
  it("refuses a logger that is not pino-compatible, at setup", () => {
    expect(() => setup({ use: { vault }, logger: { info() {} } as any })).toThrow(/logger.*pino-compatible/);
  });

  it("hands the logger to the store, so a store's own warnings arrive there too", async () => {
    const { logger, records } = capturedPino();
    // A port nothing listens on: the store's client fails to connect and says so.
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => resolve(port));
      });
    });
    const store = redisStore({ url: `redis://127.0.0.1:${port}` });
    const registry = setup({ use: { vault }, store, logger });
    try {
      await waitFor(() => records().some((r) => /redisStore: the connection to Redis failed/.test(r.msg)), "the store's warning");
      const warning = records().find((r) => /redisStore/.test(r.msg))!;
      expect(warning).toEqual(expect.objectContaining({ level: 40, err: expect.objectContaining({ message: expect.stringContaining("ECONNREFUSED") }) }));
    } finally {
      await registry.shutdown();
    }
  });
});

describe("actorMiddleware with a logger", () => {
  it("logs the library's own response errors through it", async () => {
    const { logger, records } = capturedPino();
    const failing = actor({
      onAuth: () => null,
      onFetch: () => new Response(new ReadableStream({ pull: () => Promise.reject(new Error("the body broke")) })),
    });
    const registry = setup({ use: { failing }, logger });
    const app = expressVersions[0].express();
    app.use("/registry", actorMiddleware(registry));
    try {
      const res = await request(app).get(`${RAW}/`).set("X-RivetKit-Actor-Query", actorQuery("failing", ["f"]));
      expect(res.status).toBe(500);
      expect(records().map((r) => r.msg)).toContain("the response body failed before anything was sent");
    } finally {
      await registry.shutdown();
    }
  });
});
