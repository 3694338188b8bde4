import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { Pool } from "pg";
import { Redis } from "ioredis";

// The shared services of the development and CI machines (.ci/run starts them). Tests never stop,
// pause or flush them: each run makes its own database or key prefix and removes only that.

export const PG_URL = process.env.TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/** Whether something accepts TCP connections on `url`'s host and port (checked synchronously). */
function answers(url: string): boolean {
  const { hostname, port } = new URL(url);
  const probe = `require("net").connect(${Number(port)}, ${JSON.stringify(hostname)})
    .on("connect", () => process.exit(0)).on("error", () => process.exit(1)).setTimeout(2000, () => process.exit(1))`;
  return spawnSync(process.execPath, ["-e", probe], { timeout: 5000 }).status === 0;
}

/**
 * `describe`, or outside CI, when the service does not answer, one test that says on screen why the
 * block is skipped. In CI (CI set) the block always runs, so a missing service fails it.
 */
export function describeWithService(service: "postgres" | "redis", title: string, body: () => void) {
  const url = service === "postgres" ? PG_URL : REDIS_URL;
  if (process.env.CI || answers(url)) {
    describe(title, body);
    return;
  }
  test(`${title}: skipped, ${service} does not answer at ${url}`, () => {
    console.warn(`${title}: skipped because ${service} does not answer at ${url} (.ci/run starts it; in CI this fails instead)`);
  });
}

export const uniqueName = (prefix: string) => `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`;

/** A database of its own on the shared server, dropped (with its connections) by `drop()`. */
export async function tempDatabase(): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = uniqueName("ea_test");
  const admin = new Pool({ connectionString: PG_URL, max: 1 });
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(PG_URL);
  url.pathname = "/" + name;
  return {
    url: url.toString(),
    name,
    async drop() {
      const pool = new Pool({ connectionString: PG_URL, max: 1 });
      try {
        await pool.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await pool.end();
      }
    },
  };
}

/** Deletes the keys under `prefix` on the shared Redis (SCAN + DEL; never a flush). */
export async function deletePrefix(prefix: string, url = REDIS_URL): Promise<void> {
  const redis = new Redis(url);
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}

/** A free TCP port on 127.0.0.1 (free when asked; used at once). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

/** A redis-server of this test's own, without persistence, that the test may kill and restart. */
export class OwnRedis {
  private proc?: ChildProcess;
  private constructor(readonly port: number) {}

  static async start(): Promise<OwnRedis> {
    const own = new OwnRedis(await freePort());
    await own.restart();
    return own;
  }

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  async restart(): Promise<void> {
    const proc = spawn("redis-server", ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
      stdio: "ignore",
    });
    this.proc = proc;
    const failed = new Promise<never>((_, reject) => {
      proc.once("error", reject);
      proc.once("exit", (code) => reject(new Error(`redis-server exited with ${code}`)));
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const client = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      client.on("error", () => {});
      const up = await Promise.race([client.connect().then(() => client.ping()).then(() => true, () => false), failed]);
      client.disconnect();
      if (up) return;
      if (Date.now() > deadline) throw new Error(`redis-server on port ${this.port} did not answer`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** SIGSTOP / SIGCONT: a server that stops answering without closing its connections, and comes back. */
  signal(signal: "SIGSTOP" | "SIGCONT") {
    this.proc?.kill(signal);
  }

  /** SIGKILL: the server vanishes mid-conversation, as in a crash. */
  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    proc.kill("SIGKILL");
    await exited;
  }
}

/** Captures console.error and console.warn (the library's log of a failing store) until `restore()`. */
export function captureStoreLogs(): { lines: string[]; restore(): void } {
  const lines: string[] = [];
  const record = (...args: unknown[]) => {
    lines.push(args.map((a) => (a instanceof Error ? a.message : String(a))).join(" "));
  };
  const spies = [jest.spyOn(console, "error").mockImplementation(record), jest.spyOn(console, "warn").mockImplementation(record)];
  return { lines, restore: () => spies.forEach((spy) => spy.mockRestore()) };
}
