import * as http from "node:http";
import type { AddressInfo } from "node:net";
import expressWs from "express-ws";
import WebSocket from "ws";
import { actorMiddleware, type ActorMiddlewareOptions, type Registry } from "express-actors";
import type { ExpressFactory } from "./servers";

/** SPEC §2 protocol entries for an actor query, as a browser would offer them. */
export function actorProtocols(
  query: unknown,
  opts: { params?: unknown; encoding?: string; user?: string[]; marker?: boolean } = {},
): string[] {
  const entries = opts.marker === false ? [] : ["rivetkit"];
  entries.push("query." + encodeURIComponent(JSON.stringify(query)));
  if (opts.params !== undefined) entries.push("conn_params." + encodeURIComponent(JSON.stringify(opts.params)));
  entries.push("encoding." + (opts.encoding ?? "json"));
  return [...entries, ...(opts.user ?? [])];
}

export const getOrCreate = (name: string, key: string[]) => ({ getOrCreateForKey: { name, key } });

export interface WsApp {
  app: any;
  /** http://127.0.0.1:port */
  url: string;
  /** ws://127.0.0.1:port */
  wsUrl: string;
  server: http.Server;
  /** express-ws's instance (undefined without express-ws). */
  expressWs?: expressWs.Instance;
  close(): Promise<void>;
}

export interface WsAppOptions {
  express: ExpressFactory;
  registry: Registry<any>;
  mount?: string;
  middleware?: ActorMiddlewareOptions;
  /** `http.createServer(app)` + `expressWs(app, server)` instead of `expressWs(app)` + `app.listen`. */
  ownServer?: boolean;
  /** Runs before actorMiddleware is mounted (extra middleware, app.ws routes). */
  before?: (app: any, ws: expressWs.Instance) => void;
  /** Skip expressWs entirely. */
  withoutExpressWs?: boolean;
}

/** An Express app with express-ws and the registry's router, listening on 127.0.0.1. */
export async function startWsApp(opts: WsAppOptions): Promise<WsApp> {
  const app = opts.express();
  let server: http.Server;
  let instance: expressWs.Instance | undefined;
  if (opts.withoutExpressWs) server = http.createServer(app);
  else if (opts.ownServer) {
    server = http.createServer(app);
    instance = expressWs(app as any, server);
  } else {
    instance = expressWs(app as any);
    server = undefined as unknown as http.Server;
  }
  opts.before?.(app, instance as expressWs.Instance);
  app.use(opts.mount ?? "/registry", actorMiddleware(opts.registry, opts.middleware));
  if (server) await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  else server = await new Promise<http.Server>((resolve) => {
    const s: http.Server = (app as any).listen(0, "127.0.0.1", () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    app,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    server,
    expressWs: instance,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of instance?.getWss().clients ?? []) client.terminate();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface ClientMessage {
  data: Buffer;
  binary: boolean;
  text: string;
}

/** A `ws` client that records everything it receives, with awaitable helpers. */
export class WsClient {
  readonly ws: WebSocket;
  readonly messages: ClientMessage[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: Array<() => void> = [];

  constructor(url: string, protocols: string[] = [], options: WebSocket.ClientOptions = {}) {
    this.ws = new WebSocket(url, protocols, options);
    this.ws.on("error", () => {});
    this.opened = new Promise((resolve, reject) => {
      this.ws.once("open", () => resolve());
      this.ws.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      this.ws.once("close", () => reject(new Error("closed before open")));
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.ws.once("close", (code, reason) => resolve({ code, reason: reason.toString("utf8") }));
    });
    this.ws.on("message", (data: Buffer, binary: boolean) => {
      this.messages.push({ data, binary, text: binary ? "" : data.toString("utf8") });
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  /** Resolves once `count` messages have arrived in total. */
  async received(count: number, timeoutMs = 5000): Promise<ClientMessage[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length < count) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${count} messages (have ${this.messages.length})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.messages.slice(0, count);
  }

  texts(): string[] {
    return this.messages.map((m) => m.text);
  }

  send(data: string | Buffer) {
    this.ws.send(data);
  }
}

/** Opens a client against the router's WebSocket route. */
export function connectActor(
  app: WsApp,
  query: unknown,
  opts: { path?: string; mount?: string; params?: unknown; user?: string[]; options?: WebSocket.ClientOptions } = {},
): WsClient {
  const url = `${app.wsUrl}${opts.mount ?? "/registry"}/actors/raw/websocket${opts.path ?? "/"}`;
  return new WsClient(url, actorProtocols(query, { params: opts.params, user: opts.user }), opts.options);
}

/** Resolves with the first value `within` ms, or rejects naming `what`. */
export function within<T>(promise: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]);
}
