import * as http from "node:http";
import type { AddressInfo } from "node:net";
import expressWs from "express-ws";
import WebSocket, { WebSocketServer } from "ws";
import { Server as SocketIoServer } from "socket.io";
import { io as socketIoClient } from "socket.io-client";
import { actor, actorMiddleware, setup, upgradesExcept } from "express-actors";
import { captureErrorLog, delay, waitFor } from "./helpers/actor-harness";
import { expressVersions, type ExpressFactory } from "./helpers/servers";
import { actorProtocols, getOrCreate, within, WsClient } from "./helpers/ws-harness";

// Other WebSocket servers on the same port: Socket.IO and the app's own ws servers, with
// express-ws (upgradesExcept keeps each upgrade with one owner) and without it (an actor upgrade
// is refused with 501 websocket_not_configured, whatever else listens).

const echo = actor({
  state: {},
  onAuth: () => null,
  onWebSocket: (_c, ws) => ws.addEventListener("message", (e) => ws.send(`actor:${e.data}`)),
});
const registry = setup({ use: { echo } });
afterAll(() => registry.shutdown());

let unique = 0;

interface Running {
  base: string;
  wsBase: string;
  close(): Promise<void>;
}

async function listen(server: http.Server, cleanup: () => void = () => {}): Promise<Running> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    wsBase: `ws://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.once("close", () => resolve());
        cleanup(); // io.close() closes the server itself
        server.closeAllConnections();
        if (server.listening) server.close();
      }),
  };
}

function attachSocketIo(server: http.Server): SocketIoServer {
  const io = new SocketIoServer(server);
  io.on("connection", (socket) => socket.on("echo", (text: string, ack: (reply: string) => void) => ack(`io:${text}`)));
  return io;
}

/** The app's own ws server on `/feed`, in `noServer` mode as ws documents for shared servers. */
function attachFeed(server: http.Server, others: "leave" | "destroy"): WebSocketServer {
  const feed = new WebSocketServer({ noServer: true });
  feed.on("connection", (ws) => ws.on("message", (data) => ws.send(`feed:${data}`)));
  server.on("upgrade", (req, socket, head) => {
    if (req.url === "/feed") feed.handleUpgrade(req, socket, head, (ws) => feed.emit("connection", ws, req));
    else if (others === "destroy") socket.destroy();
  });
  return feed;
}

/** A Socket.IO round trip; with polling first, only once the transport has upgraded to a WebSocket. */
async function socketIoEcho(base: string, transports: Array<"polling" | "websocket">): Promise<{ reply: string; transport: string }> {
  const client = socketIoClient(base, { transports, reconnection: false, forceNew: true });
  try {
    const upgraded = new Promise<void>((resolve) => client.io.on("open", () => client.io.engine.once("upgrade", () => resolve())));
    await within(new Promise<void>((resolve, reject) => {
      client.once("connect", () => resolve());
      client.once("connect_error", reject);
    }), "the Socket.IO connection");
    if (transports[0] === "polling") await within(upgraded, "the polling → websocket upgrade");
    const reply = await within(client.emitWithAck("echo", "hi") as Promise<string>, "the Socket.IO ack");
    return { reply, transport: client.io.engine.transport.name };
  } finally {
    client.close();
  }
}

function actorSocket(running: Running): WsClient {
  return new WsClient(`${running.wsBase}/registry/actors/raw/websocket/`, actorProtocols(getOrCreate("echo", [`k${++unique}`])));
}

async function echoOf(client: WsClient, text: string): Promise<string> {
  await within(client.opened, "open");
  const before = client.messages.length;
  client.send(text);
  return (await client.received(before + 1))[before].text;
}

/** The HTTP answer to an actor upgrade (the router's, or else RivetKit's gateway's) that is refused before any handshake. */
function refusal(running: Running, via: "router" | "gateway" = "router"): Promise<{ status: number; type: string | undefined; body: unknown }> {
  const ws =
    via === "router"
      ? new WebSocket(`${running.wsBase}/registry/actors/raw/websocket/`, actorProtocols(getOrCreate("echo", [`k${++unique}`])))
      : new WebSocket(`${running.wsBase}/registry/gateway/some-actor-id/websocket/`, ["rivet", "rivet_encoding.bare"]);
  return within(
    new Promise((resolve, reject) => {
      ws.on("unexpected-response", (_req, res) => {
        let text = "";
        res.on("data", (chunk) => (text += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, type: res.headers["content-type"], body: JSON.parse(text) }));
      });
      ws.on("open", () => reject(new Error("the actor upgrade was accepted")));
      ws.on("error", (err) => reject(new Error(`no HTTP answer: ${err.message}`)));
    }),
    "the refusal",
  );
}

describe.each(expressVersions)("Socket.IO, an app ws server, express-ws routes and actors on one server ($label)", ({ express }) => {
  let running: Running;
  let io: SocketIoServer;
  let feed: WebSocketServer;

  beforeAll(async () => {
    const app = express();
    const server = http.createServer(app);
    io = attachSocketIo(server);
    feed = attachFeed(server, "leave");
    const { app: wsApp, getWss } = expressWs(app as any, upgradesExcept(server, ["/socket.io/", "/feed"]));
    wsApp.ws("/echo", (ws) => ws.on("message", (data) => ws.send(`route:${data}`)));
    app.use("/registry", actorMiddleware(registry));
    // Upgraded sockets are no longer the HTTP server's connections: each owner ends its own.
    running = await listen(server, () => {
      io.close();
      for (const client of [...feed.clients, ...getWss().clients]) client.terminate();
    });
  });
  afterAll(() => running.close());

  it("a Socket.IO client exchanges events over its websocket transport, and after a polling upgrade", async () => {
    expect(await socketIoEcho(running.base, ["websocket"])).toEqual({ reply: "io:hi", transport: "websocket" });
    expect(await socketIoEcho(running.base, ["polling", "websocket"])).toEqual({ reply: "io:hi", transport: "websocket" });
  });

  it("an express-ws route, the app's own ws server and an actor socket each echo, and stay open", async () => {
    const route = new WsClient(`${running.wsBase}/echo`);
    const own = new WsClient(`${running.wsBase}/feed`);
    const actorWs = actorSocket(running);
    expect(await echoOf(route, "a")).toBe("route:a");
    expect(await echoOf(own, "b")).toBe("feed:b");
    expect(await echoOf(actorWs, "c")).toBe("actor:c");
    // Past Socket.IO's 1 s destroyUpgrade timer, which ends other paths' sockets nobody answered.
    await delay(1200);
    expect(await Promise.all([echoOf(route, "d"), echoOf(own, "e"), echoOf(actorWs, "f")])).toEqual(["route:d", "feed:e", "actor:f"]);
    for (const client of [route, own, actorWs]) client.ws.close();
  });

  it("keeps serving all of them at once", async () => {
    const [ioWs, ioPolling, route, actorEcho] = await Promise.all([
      socketIoEcho(running.base, ["websocket"]),
      socketIoEcho(running.base, ["polling", "websocket"]),
      echoOf(new WsClient(`${running.wsBase}/echo`), "g"),
      echoOf(actorSocket(running), "h"),
    ]);
    expect([ioWs.reply, ioPolling.reply, route, actorEcho]).toEqual(["io:hi", "io:hi", "route:g", "actor:h"]);
    const res = await fetch(`${running.base}/registry/health`);
    expect(res.status).toBe(200);
  });
});

describe("upgradesExcept", () => {
  it("refuses arguments it cannot use, naming the fix", () => {
    const server = http.createServer();
    expect(() => upgradesExcept(server, ["socket.io"])).toThrow(/paths must be an array of paths starting with "\/"/);
    expect(() => upgradesExcept(server, "/socket.io/" as unknown as string[])).toThrow(TypeError);
    expect(() => upgradesExcept(undefined as unknown as http.Server, [])).toThrow(/server must be an http or https server/);
  });

  it("keeps a path and everything below it, with or without a trailing slash, and relays the rest", () => {
    const server = http.createServer();
    const seen: string[] = [];
    for (const paths of [["/socket.io/"], ["/socket.io"]]) {
      upgradesExcept(server, paths).on("upgrade", (req: http.IncomingMessage) => seen.push(`${paths[0]} ${req.url}`));
    }
    for (const url of ["/socket.io/?EIO=4", "/socket.io", "/socket.iox", "/registry/actors/raw/websocket/"]) {
      server.emit("upgrade", { url }, undefined, Buffer.alloc(0));
    }
    expect(seen).toEqual([
      "/socket.io/ /socket.iox",
      "/socket.io /socket.iox",
      "/socket.io/ /registry/actors/raw/websocket/",
      "/socket.io /registry/actors/raw/websocket/",
    ]);
  });
});

interface Arrangement {
  name: string;
  /** Attaches the other listeners; returns a check that their own paths still work, and a cleanup. */
  attach(server: http.Server): { works(running: Running): Promise<void>; cleanup(): void };
}

const noCleanup = () => {};

async function feedEchoes(running: Running, path = "/feed") {
  const client = new WsClient(`${running.wsBase}${path}`);
  expect(await echoOf(client, "x")).toBe("feed:x");
  client.ws.close();
}

async function socketIoWorks(running: Running) {
  expect(await socketIoEcho(running.base, ["websocket"])).toEqual({ reply: "io:hi", transport: "websocket" });
  expect(await socketIoEcho(running.base, ["polling", "websocket"])).toEqual({ reply: "io:hi", transport: "websocket" });
}

const arrangements: Arrangement[] = [
  { name: "no upgrade listener at all", attach: () => ({ works: async () => {}, cleanup: noCleanup }) },
  {
    name: "Socket.IO",
    attach: (server) => {
      const io = attachSocketIo(server);
      return { works: socketIoWorks, cleanup: () => io.close() };
    },
  },
  {
    name: "the app's own ws server on the whole server, new WebSocketServer({ server })",
    attach: (server) => {
      const wss = new WebSocketServer({ server });
      wss.on("connection", (ws) => ws.on("message", (data) => ws.send(`feed:${data}`)));
      return { works: (running) => feedEchoes(running, "/anywhere"), cleanup: () => wss.clients.forEach((c) => c.terminate()) };
    },
  },
  {
    name: "the app's own ws server with a path, new WebSocketServer({ server, path })",
    attach: (server) => {
      const wss = new WebSocketServer({ server, path: "/feed" });
      wss.on("connection", (ws) => ws.on("message", (data) => ws.send(`feed:${data}`)));
      return { works: feedEchoes, cleanup: () => wss.clients.forEach((c) => c.terminate()) };
    },
  },
  {
    name: "the app's own noServer ws server, leaving other paths alone",
    attach: (server) => {
      const feed = attachFeed(server, "leave");
      return { works: feedEchoes, cleanup: () => feed.clients.forEach((c) => c.terminate()) };
    },
  },
  {
    name: "the app's own noServer ws server, destroying other paths' sockets",
    attach: (server) => {
      const feed = attachFeed(server, "destroy");
      return { works: feedEchoes, cleanup: () => feed.clients.forEach((c) => c.terminate()) };
    },
  },
  {
    name: "Socket.IO and the app's own noServer ws server",
    attach: (server) => {
      const io = attachSocketIo(server);
      const feed = attachFeed(server, "leave");
      return {
        works: async (running) => {
          await socketIoWorks(running);
          await feedEchoes(running);
        },
        cleanup: () => {
          io.close();
          feed.clients.forEach((c) => c.terminate());
        },
      };
    },
  },
];

describe.each(expressVersions)("without express-ws, whatever else listens for upgrades ($label)", ({ express }) => {
  async function start(arrangement: Arrangement, factory: ExpressFactory) {
    const app = factory();
    app.use("/registry", actorMiddleware(registry));
    const server = http.createServer(app);
    const other = arrangement.attach(server);
    return { running: await listen(server, other.cleanup), works: other.works };
  }

  it.each(arrangements)("$name: actor upgrades get 501 websocket_not_configured, logged once; the other paths still work", async (arrangement) => {
    const { running, works } = await start(arrangement, express);
    const log = captureErrorLog();
    try {
      const refused = { code: "websocket_not_configured", message: "WebSockets are not enabled on this server" };
      for (let i = 0; i < 2; i++) expect(await refusal(running)).toEqual({ status: 501, type: "application/json", body: refused });
      // RivetKit's client reads its own error shape (SPEC §10).
      expect(await refusal(running, "gateway")).toEqual({
        status: 501,
        type: "application/json",
        body: { group: "request", ...refused, metadata: null },
      });
      expect(log.lines).toHaveLength(1);
      expect(log.lines[0]).toMatch(/express-ws is not set up on this server\. Call expressWs\(app\)/);
      await works(running);
      const res = await fetch(`${running.base}/registry/health`);
      expect(res.status).toBe(200);
    } finally {
      log.restore();
      await running.close();
    }
  });
});

describe("without express-ws, behind a request listener that is not the Express app itself", () => {
  it("cannot refuse an actor upgrade that a ws server on the whole server accepts, but logs it once", async () => {
    const app = expressVersions[0].express();
    app.use("/registry", actorMiddleware(registry));
    const server = http.createServer((req, res) => app(req, res));
    const wss = new WebSocketServer({ server });
    wss.on("connection", (ws) => ws.send("theirs"));
    const running = await listen(server, () => wss.clients.forEach((c) => c.terminate()));
    const log = captureErrorLog();
    try {
      const client = actorSocket(running);
      expect((await client.received(1))[0].text).toBe("theirs");
      await waitFor(() => log.lines.length > 0, "the log line");
      expect(log.lines).toHaveLength(1);
      expect(log.lines[0]).toMatch(/express-ws is not set up on this server/);
      client.ws.close();
    } finally {
      log.restore();
      await running.close();
    }
  });
});

describe("express-ws next to Socket.IO, with an asynchronous verifyClient", () => {
  it("waits for ws's handshake instead of refusing the actor upgrade", async () => {
    const app = expressVersions[0].express();
    const server = http.createServer(app);
    const io = attachSocketIo(server);
    const verifyClient = (_info: unknown, done: (ok: boolean) => void) => setTimeout(() => done(true), 400);
    const { getWss } = expressWs(app as any, upgradesExcept(server, ["/socket.io/"]), { wsOptions: { verifyClient } });
    app.use("/registry", actorMiddleware(registry));
    const running = await listen(server, () => {
      io.close();
      for (const client of getWss().clients) client.terminate();
    });
    try {
      const client = actorSocket(running);
      expect(await echoOf(client, "late")).toBe("actor:late");
      client.ws.close();
    } finally {
      await running.close();
    }
  });
});
