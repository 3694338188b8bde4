// Calls from the soak runner to its child processes over Node's IPC channel: each child serves an
// object of async methods, the runner calls them by name and awaits the result.
import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";

type Api = Record<string, (arg: any) => Promise<unknown>>;

interface Call {
  id: number;
  method: string;
  arg: unknown;
}

interface Reply {
  id: number;
  result?: unknown;
  error?: string;
}

/** In a child: answers the runner's calls with `api`, says it is ready with `info`, exits when the runner goes. */
export function serveCalls(api: Api, info: unknown = null): void {
  const send = process.send?.bind(process);
  if (!send) throw new Error("run this file through bench/soak.ts (it needs the runner's IPC channel)");
  process.on("message", async (call: Call) => {
    let reply: Reply;
    try {
      reply = { id: call.id, result: await api[call.method](call.arg) };
    } catch (err) {
      reply = { id: call.id, error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
    }
    if (process.connected) send(reply);
  });
  process.on("disconnect", () => process.exit(0));
  send({ id: 0, result: info } satisfies Reply);
}

const ROOT = path.resolve(__dirname, "..");
const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

export interface WorkerOptions {
  /** Flags for node itself, e.g. --expose-gc. */
  nodeArgs?: string[];
  /** The tsconfig tsx compiles with: bench/tsconfig.json resolves "express-actors" to dist/. */
  tsconfig?: string;
}

/**
 * A child process running `bench/<script>` under tsx. On POSIX it starts through sh, which first
 * raises the soft file descriptor limit to the hard one: 10,000 sockets need more than the usual 1,024.
 */
export class Worker<A extends Api> {
  readonly ready: Promise<unknown>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private nextId = 1;
  private exitInfo?: string;

  constructor(
    readonly label: string,
    script: string,
    args: string[] = [],
    options: WorkerOptions = {},
  ) {
    const argv = [...(options.nodeArgs ?? []), "--import", "tsx", path.join(__dirname, script), ...args];
    const env = { ...process.env };
    if (options.tsconfig) env.TSX_TSCONFIG_PATH = options.tsconfig;
    const [command, commandArgs] =
      process.platform === "win32"
        ? [process.execPath, argv]
        : ["/bin/sh", ["-c", 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', process.execPath, ...argv]];
    this.child = spawn(command, commandArgs, { cwd: ROOT, env, stdio: ["ignore", "inherit", "inherit", "ipc"] });
    live.add(this.child);
    // The first reply (id 0) is the ready message; it fails like any call if the child dies first.
    this.ready = new Promise((resolve, reject) => this.pending.set(0, { resolve, reject }));
    this.child.on("message", (reply: Reply) => {
      const waiter = this.pending.get(reply.id);
      if (!waiter) return;
      this.pending.delete(reply.id);
      if (reply.error !== undefined) waiter.reject(new Error(`${label}: ${reply.error}`));
      else waiter.resolve(reply.result);
    });
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        live.delete(this.child);
        this.exitInfo = signal ? `killed by ${signal}` : `exited with ${code}`;
        const gone = new Error(`${label}: ${this.exitInfo}`);
        for (const waiter of this.pending.values()) waiter.reject(gone);
        this.pending.clear();
        resolve({ code, signal });
      });
    });
  }

  /** Whether the child is still running. */
  get alive(): boolean {
    return this.exitInfo === undefined;
  }

  /** Calls `method` in the child; rejects if the child dies or `timeoutMs` passes first. */
  call<K extends keyof A & string>(method: K, arg: Parameters<A[K]>[0], timeoutMs = 120_000): Promise<Awaited<ReturnType<A[K]>>> {
    if (!this.alive) return Promise.reject(new Error(`${this.label}: ${this.exitInfo}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.label}: ${method} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as Awaited<ReturnType<A[K]>>);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.send({ id, method, arg } satisfies Call);
    });
  }

  kill(): void {
    this.child.kill("SIGKILL");
  }

  /** Closes the IPC channel (the child exits on disconnect), then kills it if it lingers. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.alive) return;
    if (this.child.connected) this.child.disconnect();
    const timer = setTimeout(() => this.kill(), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
