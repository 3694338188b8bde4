import { fork, type ChildProcess } from "node:child_process";
import * as path from "node:path";

/** The two RivetKit clients under test: the pinned 2.0.33 and the newest 2.x (an npm alias). */
export const rivetkitPackages = ["rivetkit", "rivetkit-latest"] as const;
export type RivetkitPackage = (typeof rivetkitPackages)[number];

/** An error as the real client threw it. */
export interface ClientError {
  name: string;
  group?: string;
  code?: string;
  message: string;
  metadata?: unknown;
  /** `instanceof` the client's exported ActorError. */
  isClientActorError: boolean;
}

export class DriverError extends Error {
  constructor(readonly error: ClientError) {
    super(`${error.name}: ${error.group}/${error.code}: ${error.message}`);
  }
}

export interface FetchResult {
  status: number;
  statusText: string;
  headers: [string, string][];
  body: string;
}

export interface HandleSpec {
  how: "get" | "getOrCreate" | "create" | "getForId";
  name: string;
  key?: string | string[];
  actorId?: string;
  opts?: { params?: unknown; createWithInput?: unknown; input?: unknown };
}

type Reply = { id: number; ok: boolean; value?: any; error?: ClientError };
type SocketEvent = { event: "ws"; sock: number; type: string; text?: string; base64?: string; code?: number; reason?: string; protocol?: string };

let refs = 0;

/** `createClient(endpoint)` from the real `rivetkit/client`, running in a child process (rivetkit-driver.mjs). */
export class RivetkitClient {
  private pending = new Map<number, { resolve(value: any): void; reject(err: Error): void }>();
  private sockets = new Map<number, RemoteSocket>();
  private nextId = 0;
  private output = "";
  version = "";
  socketMethod = "";

  private constructor(private readonly child: ChildProcess) {
    child.stdout!.on("data", (chunk) => (this.output += chunk));
    child.stderr!.on("data", (chunk) => (this.output += chunk));
    child.on("message", (message: Reply | SocketEvent) => {
      if ("event" in message) {
        this.sockets.get(message.sock)?.events.push(message);
        this.sockets.get(message.sock)?.wake();
        return;
      }
      const waiter = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (message.ok) waiter?.resolve(message.value);
      else waiter?.reject(new DriverError(message.error!));
    });
    child.on("exit", (code) => {
      for (const waiter of this.pending.values()) waiter.reject(new Error(`the client process exited (${code}):\n${this.output}`));
      this.pending.clear();
    });
  }

  static async start(pkg: RivetkitPackage, endpoint: string): Promise<RivetkitClient> {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, LOG_LEVEL: "error" };
    const child = fork(path.join(__dirname, "rivetkit-driver.mjs"), [pkg, endpoint], {
      cwd: path.join(__dirname, "..", ".."),
      env,
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    const client = new RivetkitClient(child);
    await new Promise<void>((resolve, reject) => {
      child.once("message", () => resolve());
      child.once("exit", (code) => reject(new Error(`the client process exited (${code}):\n${client.output}`)));
    });
    Object.assign(client, await client.call("version"));
    return client;
  }

  call(op: string, args: object = {}): Promise<any> {
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, op, ...args });
    });
  }

  /** `client[name].get / getOrCreate / getForId(...)`, or `await client[name].create(...)`. */
  async handle(spec: HandleSpec): Promise<RemoteHandle> {
    const ref = ++refs;
    await this.call("handle", { ref, ...spec });
    return new RemoteHandle(this, ref);
  }

  /** Errors the promise must reject with, as the client threw them. */
  static async rejection(promise: Promise<unknown>): Promise<ClientError> {
    try {
      await promise;
    } catch (err) {
      if (err instanceof DriverError) return err.error;
      throw err;
    }
    throw new Error("expected the client call to reject");
  }

  socket(sock: number): RemoteSocket {
    const socket = new RemoteSocket(this, sock);
    this.sockets.set(sock, socket);
    return socket;
  }

  stop() {
    this.child.kill("SIGKILL");
  }
}

export class RemoteHandle {
  constructor(private readonly client: RivetkitClient, private readonly ref: number) {}

  resolve(): Promise<string> {
    return this.client.call("resolve", { ref: this.ref });
  }

  /** `handle.fetch(input, init)`; bodies as text, or bytes given and read back as `{ base64 }`. */
  fetch(
    input: string,
    init: { method?: string; headers?: Record<string, string>; body?: string | { base64: string } } = {},
    read: "text" | "base64" = "text",
  ): Promise<FetchResult> {
    return this.client.call("fetch", { ref: this.ref, input, init, read });
  }

  /** An action (`handle[name](...args)`), or one over `handle.connect()`: RivetKit features express-actors refuses. */
  action(action: string, args: unknown[] = [], over: "handle" | "connection" = "handle"): Promise<unknown> {
    return this.client.call(over === "handle" ? "action" : "connAction", { ref: this.ref, action, args });
  }

  /** The Response's head, with its body left to read chunk by chunk. */
  async fetchStream(input: string, init: { method?: string; headers?: Record<string, string> } = {}) {
    const head: FetchResult & { stream: number } = await this.client.call("fetch", { ref: this.ref, input, init, read: "stream" });
    const { stream } = head;
    return {
      ...head,
      read: (): Promise<{ done: boolean; text?: string }> => this.client.call("read", { stream }),
      cancel: (): Promise<void> => this.client.call("cancel", { stream }),
    };
  }

  /** `handle.websocket(path)` on 2.0.x, `handle.webSocket(path)` on 2.1+. */
  async websocket(path?: string, protocols?: string[]): Promise<RemoteSocket> {
    const { sock } = await this.client.call("ws", { ref: this.ref, path, protocols });
    return this.client.socket(sock);
  }
}

/** The client's WebSocket, seen through its events. */
export class RemoteSocket {
  readonly events: SocketEvent[] = [];
  private waiters: Array<() => void> = [];

  constructor(private readonly client: RivetkitClient, private readonly sock: number) {}

  wake() {
    for (const wake of this.waiters.splice(0)) wake();
  }

  /** The `count`-th event of `type` (1-based), waiting for it. */
  async next(type: string, count = 1, timeoutMs = 5000): Promise<SocketEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.filter((e) => e.type === type);
      if (found.length >= count) return found[count - 1];
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${type} #${count}; got ${JSON.stringify(this.events)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  messages() {
    return this.events.filter((e) => e.type === "message");
  }

  send(data: string | Buffer): Promise<void> {
    return this.client.call("send", typeof data === "string" ? { sock: this.sock, text: data } : { sock: this.sock, base64: data.toString("base64") });
  }

  close(code?: number, reason?: string): Promise<void> {
    return this.client.call("close", { sock: this.sock, code, reason });
  }
}
