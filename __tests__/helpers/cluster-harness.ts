import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import { createInterface } from "node:readline";
import { freePort } from "./services";

const FIXTURE = path.join(__dirname, "..", "fixtures", "cluster-node.ts");
const PIN_WS = path.join(__dirname, "..", "fixtures", "pin-ws.cjs");
export const SECRET = "cluster-test-secret-0123456789";

export interface NodeEnv {
  REDIS_URL: string;
  PREFIX: string;
  PG_URL: string;
  LEASE_MS?: string;
  SLEEP_MS?: string;
  /** Set: counters log each activation in the table activation_log (see fixtures/cluster-node.ts). */
  ACTIVATION_LOG?: string;
  /** "8": express-ws on ws 8 too (fixtures/pin-ws.cjs); unset, it keeps its own ws 7. */
  PIN_WS?: string;
}

/** One cluster node in a process of its own (tsx), listening on its own 127.0.0.1 port. */
export class ClusterNode {
  /** Everything the node wrote to stderr, for the failure messages and log checks. */
  stderr = "";

  private constructor(
    readonly name: string,
    readonly port: number,
    private readonly proc: ChildProcess,
  ) {
    proc.stderr!.on("data", (chunk) => (this.stderr += chunk));
  }

  /** Starts a node; `port` restarts one on the port it had (what a deploy does); `fixture` runs another node program. */
  static async start(name: string, env: NodeEnv, port?: number, fixture = FIXTURE): Promise<ClusterNode> {
    port ??= await freePort();
    const proc = spawn(process.execPath, ["--expose-gc", "-r", PIN_WS, "--import", "tsx", fixture], {
      env: { ...process.env, ...env, NODE_NAME: name, PORT: String(port), SECRET, EXPRESS_ACTORS_LOG: "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const node = new ClusterNode(name, port, proc);
    const lines = createInterface({ input: proc.stdout! });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} did not start:\n${node.stderr}`)), 30_000);
      lines.once("line", () => {
        clearTimeout(timer);
        resolve();
      });
      proc.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited with ${code}:\n${node.stderr}`));
      });
    });
    return node;
  }

  get url() {
    return `http://127.0.0.1:${this.port}/registry`;
  }

  /** A request to the counter with `key` through this node's router. */
  fetch(key: string, actorPath: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("x-rivetkit-actor-query", JSON.stringify({ getOrCreateForKey: { name: "counter", key: [key] } }));
    return fetch(`${this.url}/actors/raw/http${actorPath}`, { ...init, headers });
  }

  async json(key: string, actorPath: string, init: RequestInit = {}): Promise<any> {
    const res = await this.fetch(key, actorPath, init).catch((err) => {
      throw new Error(`${this.name} ${actorPath}: ${err.message}; its log:\n${this.stderr}`);
    });
    const body = await res.text();
    if (res.status !== 200) throw new Error(`${this.name} ${actorPath}: ${res.status} ${body}`);
    return JSON.parse(body);
  }

  signal(signal: NodeJS.Signals) {
    this.proc.kill(signal);
  }

  async kill() {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((resolve) => this.proc.once("exit", resolve));
    this.proc.kill("SIGCONT");
    this.proc.kill("SIGKILL");
    await exited;
  }

  async exited(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    await new Promise((resolve) => this.proc.once("exit", resolve));
  }
}

export const startNodes = (count: number, env: NodeEnv) =>
  Promise.all(Array.from({ length: count }, (_, i) => ClusterNode.start(`n${i + 1}`, env)));

export const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns something other than undefined; fails after `ms`. */
export async function eventually<T>(check: () => Promise<T | undefined>, ms = 15_000, what = "the condition"): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(50);
  }
}
