import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import { createInterface } from "node:readline";
import { Redis } from "ioredis";
import { REDIS_URL, freePort } from "./services";

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
  /** A file the nodes append their `once` actors' createState and onStart runs to. */
  EVENT_LOG?: string;
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

  /**
   * Starts a node; `port` restarts one on the port it had (what a deploy does); `fixture` runs another
   * node program. Without `port`, a free one is used; it is only free when asked: on a busy machine
   * another process can take it before the node listens, so a node that exits with EADDRINUSE is
   * started again on another.
   */
  static async start(name: string, env: NodeEnv, port?: number, fixture = FIXTURE): Promise<ClusterNode> {
    if (port !== undefined) return ClusterNode.startOnce(name, env, port, fixture);
    for (let attempt = 1; ; attempt++) {
      try {
        return await ClusterNode.startOnce(name, env, await freePort(), fixture);
      } catch (err) {
        if (attempt >= 5 || !/EADDRINUSE/.test((err as Error).message)) throw err;
      }
    }
  }

  private static async startOnce(name: string, env: NodeEnv, port: number, fixture: string): Promise<ClusterNode> {
    const proc = spawn(process.execPath, ["--expose-gc", "-r", PIN_WS, "--import", "tsx", fixture], {
      env: { ...process.env, ...env, NODE_NAME: name, PORT: String(port), SECRET, EXPRESS_ACTORS_LOG: "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const node = new ClusterNode(name, port, proc);
    const lines = createInterface({ input: proc.stdout! });
    try {
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
    } catch (err) {
      await node.kill();
      throw err;
    }
    return node;
  }

  get url() {
    return `http://127.0.0.1:${this.port}/registry`;
  }

  /** A request to the counter with `key` through this node's router. */
  fetch(key: string, actorPath: string, init: RequestInit = {}): Promise<Response> {
    return this.fetchActor("counter", key, actorPath, init);
  }

  /** A request to the actor `name` with `key` through this node's router. */
  fetchActor(name: string, key: string, actorPath: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("x-rivetkit-actor-query", JSON.stringify({ getOrCreateForKey: { name, key: [key] } }));
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

/** `count` nodes n1, n2, …; if one cannot start, the others are stopped before the error is thrown. */
export async function startNodes(count: number, env: NodeEnv): Promise<ClusterNode[]> {
  const started = await Promise.allSettled(Array.from({ length: count }, (_, i) => ClusterNode.start(`n${i + 1}`, env)));
  const nodes = started.flatMap((result) => (result.status === "fulfilled" ? [result.value] : []));
  const failed = started.find((result) => result.status === "rejected");
  if (failed) {
    await Promise.all(nodes.map((node) => node.kill()));
    throw failed.reason;
  }
  return nodes;
}

/** How many actor leases the cluster under `prefix` holds in Redis right now. */
export async function leasesHeld(prefix: string, url = REDIS_URL): Promise<number> {
  const redis = new Redis(url);
  try {
    let cursor = "0";
    let count = 0;
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}lease:*`, "COUNT", 1000);
      count += keys.length;
      cursor = next;
    } while (cursor !== "0");
    return count;
  } finally {
    redis.disconnect();
  }
}

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

/** `promise`, or a failure naming `what` if it has not settled after `ms`. */
export async function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
