import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { createInterface } from "node:readline";
import { Redis } from "ioredis";
import WebSocket from "ws";
import { delay, eventually } from "./helpers/cluster-harness";
import { REDIS_URL, deletePrefix, describeWithService, freePort, tempDatabase, uniqueName } from "./helpers/services";

jest.setTimeout(120_000);

// demo/node-cluster.ts as a user runs it: a node:cluster primary and two workers sharing one public
// port, each advertising a port of its own. docs/clusters.md shows the same file.
const EXAMPLE = path.join(__dirname, "..", "demo", "node-cluster.ts");

interface Event {
  msg: string;
  pid: number;
  worker?: number;
  port?: number;
  advertise?: string;
  code?: number | null;
  signal?: string | null;
}

/** The example's primary process; its workers share its stdout, one JSON line per event. */
class Primary {
  readonly events: Event[] = [];
  output = "";
  /** The library's warnings and errors, which go to stderr. */
  stderr = "";
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly proc: ChildProcess;

  constructor(env: Record<string, string>) {
    const { ACTORS_CLUSTER_SECRET: _mine, ...inherited } = process.env;
    this.proc = spawn(process.execPath, ["--import", "tsx", EXAMPLE], {
      env: { ...inherited, ...env, EXPRESS_ACTORS_LOG: "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.exit = new Promise((resolve) => this.proc.once("exit", (code, signal) => resolve({ code, signal })));
    this.proc.stderr!.on("data", (chunk) => {
      this.output += chunk;
      this.stderr += chunk;
    });
    createInterface({ input: this.proc.stdout! }).on("line", (line) => {
      this.output += line + "\n";
      try {
        const event = JSON.parse(line);
        if (event.msg === "worker ready" || event.msg === "worker exited") this.events.push(event);
      } catch {
        // a log line of the library's, kept in `output` only
      }
    });
  }

  get pid() {
    return this.proc.pid!;
  }

  /** Workers that said they were ready and have not exited since, by pid. */
  workers(): Map<number, Event> {
    const live = new Map<number, Event>();
    for (const event of this.events) {
      if (event.msg === "worker ready") live.set(event.pid, event);
      else live.delete(event.worker!);
    }
    return live;
  }

  /** Waits until `count` workers are ready, none of them one of `gone`. */
  async ready(count: number, gone: number[] = []): Promise<Map<number, Event>> {
    await eventually(
      async () => {
        if (this.proc.exitCode !== null || this.proc.signalCode !== null) throw new Error(`the primary exited:\n${this.output}`);
        const live = this.workers();
        return live.size === count && gone.every((pid) => !live.has(pid)) ? true : undefined;
      },
      60_000,
      `${count} ready workers; output so far:\n${this.output}`,
    );
    return this.workers();
  }

  signal(signal: NodeJS.Signals) {
    this.proc.kill(signal);
  }

  /** SIGKILL to a primary still running and to its live workers (they would exit with it anyway). */
  kill() {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    for (const pid of this.workers().keys()) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // exited a moment ago, not reported yet
      }
    }
    this.proc.kill("SIGKILL");
  }
}

function alive(pid: number) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface Reply {
  status: number;
  retryAfter?: string;
  body: { count: number; activations: number[]; edge: number; owner: number; code?: string };
}

/** A request to the counter `key` on a new connection, so node:cluster hands each one to the next worker. */
function request(port: number, key: string, method = "POST"): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method,
        path: "/registry/actors/raw/http/inc",
        agent: false,
        headers: { "x-rivetkit-actor-query": JSON.stringify({ getOrCreateForKey: { name: "counter", key: [key] } }) },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk) => (text += chunk));
        res.on("end", () => resolve({ status: res.statusCode!, retryAfter: res.headers["retry-after"], body: JSON.parse(text) }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** A socket to the counter `key` through the shared port, with its messages (JSON) and its close kept. */
class Socket {
  readonly ws: WebSocket;
  private readonly messages: Reply["body"][] = [];
  readonly closed: Promise<[number, string]>;

  constructor(port: number, key: string) {
    this.ws = new WebSocket(`ws://127.0.0.1:${port}/registry/actors/raw/websocket/`, {
      headers: { "x-rivetkit-actor-query": JSON.stringify({ getOrCreateForKey: { name: "counter", key: [key] } }) },
    });
    this.ws.on("message", (data) => this.messages.push(JSON.parse(String(data))));
    this.ws.on("error", () => {});
    this.closed = new Promise((resolve) => this.ws.once("close", (code, reason) => resolve([code, String(reason)])));
  }

  next(): Promise<Reply["body"]> {
    return eventually(async () => {
      if (this.messages.length) return this.messages.shift()!;
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error(`closed with ${(await this.closed).join(" ")} before a message`);
      return undefined;
    }, 15_000, "a message");
  }
}

/** How many leases are held under `prefix`, and the pids in the node records (heartbeats) there. */
async function clusterKeys(prefix: string): Promise<{ leases: number; nodes: number[] }> {
  const redis = new Redis(REDIS_URL);
  try {
    const leases = await redis.keys(`${prefix}lease:*`);
    const records = await redis.keys(`${prefix}node:*`);
    const values = records.length ? await redis.mget(...records) : [];
    return { leases: leases.length, nodes: values.filter((v) => v !== null).map((v) => JSON.parse(v!).pid) };
  } finally {
    redis.disconnect();
  }
}

test("docs/clusters.md shows demo/node-cluster.ts as it is", () => {
  const page = fs.readFileSync(path.join(__dirname, "..", "docs", "clusters.md"), "utf8");
  expect(page).toContain("```ts\n" + fs.readFileSync(EXAMPLE, "utf8") + "```\n");
});

describeWithService("postgres", "node:cluster: two workers on one public port (demo/node-cluster.ts)", () => {
  describeWithService("redis", "over one Redis", () => {
    let db: Awaited<ReturnType<typeof tempDatabase>>;
    let port: number;
    let env: Record<string, string>;
    const primaries: Primary[] = [];
    const prefix = uniqueName("ea_node_cluster") + ":";
    const key = "shared";
    let expected = 0;

    const start = async () => {
      const primary = new Primary(env);
      primaries.push(primary);
      await primary.ready(2);
      return primary;
    };

    beforeAll(async () => {
      db = await tempDatabase();
      port = await freePort();
      env = { PORT: String(port), HOST: "127.0.0.1", DATABASE_URL: db.url, REDIS_URL, CLUSTER_PREFIX: prefix, LEASE_MS: "3000" };
      await start();
    });
    afterAll(async () => {
      for (const primary of primaries) primary.kill();
      await Promise.all(primaries.map((primary) => primary.exit));
      await db?.drop();
      await deletePrefix(prefix);
    });

    /** `n` increments in `lanes` concurrent lanes; checks every reply and returns them. */
    async function increments(n: number, lanes = 4): Promise<Reply[]> {
      const replies: Reply[] = [];
      await Promise.all(
        Array.from({ length: lanes }, async (_, lane) => {
          for (let i = lane; i < n; i += lanes) replies.push(await request(port, key));
        }),
      );
      for (const reply of replies) expect(reply.status).toBe(200);
      const counts = replies.map((r) => r.body.count).sort((a, b) => a - b);
      expect(counts).toEqual(Array.from({ length: n }, (_, i) => expected + i + 1));
      expected += n;
      return replies;
    }

    test("requests to one counter through the shared port land on both workers, run on one, and count exactly", async () => {
      const workers = [...primaries[0].workers().keys()];
      const replies = await increments(40);
      expect(new Set(replies.map((r) => r.body.edge))).toEqual(new Set(workers));
      const owners = new Set(replies.map((r) => r.body.owner));
      expect(owners.size).toBe(1);
      const [owner] = owners;
      expect(workers).toContain(owner);
      for (const reply of replies) expect(reply.body.activations).toEqual([owner]);
    });

    test("each worker listens on a port of its own, which it advertises; it refuses an unsigned forward with 403", async () => {
      const { body } = await request(port, key, "GET");
      const own = primaries[0].workers().get(body.owner)!.advertise!;
      expect(own).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/registry$/);
      const ports = [...primaries[0].workers().values()].map((w) => new URL(w.advertise!).port);
      expect(new Set([...ports, String(port)]).size).toBe(3);

      const forged = await fetch(`${own}/actors/cluster/http/inc`, { method: "POST" });
      expect(forged.status).toBe(403);
      expect(await forged.json()).toMatchObject({ code: "forbidden" });
    });

    test("WebSockets through the shared port reach the one owner from both workers, relayed by the other's own port", async () => {
      const workers = [...primaries[0].workers().keys()];
      const sockets = Array.from({ length: 4 }, () => new Socket(port, key));
      const greetings = await Promise.all(sockets.map((socket) => socket.next()));
      expect(new Set(greetings.map((g) => g.edge))).toEqual(new Set(workers));
      const owner = greetings[0].owner;
      for (const greeting of greetings) expect(greeting).toEqual({ count: expected, edge: greeting.edge, owner });

      // One message on each socket counts one, in the same actor as the HTTP requests.
      const counts: number[] = [];
      for (const socket of sockets) {
        socket.ws.send("inc");
        counts.push((await socket.next()).count);
      }
      expect(counts).toEqual([1, 2, 3, 4].map((n) => expected + n));
      expected += 4;
      for (const socket of sockets) socket.ws.close(1000);
      for (const socket of sockets) expect((await socket.closed)[0]).toBe(1000);
      // An HTTP write saves the state before it answers, the socket messages' changes with it.
      const { body } = await request(port, key);
      expect([body.count, body.owner]).toEqual([++expected, owner]);
    });

    test("a worker killed with SIGKILL is forked again; after its lease the counter goes on from its last count", async () => {
      const primary = primaries[0];
      const { body } = await request(port, key, "GET");
      const killed = body.owner;
      const survivor = [...primary.workers().keys()].find((pid) => pid !== killed)!;
      process.kill(killed, "SIGKILL");
      await eventually(async () => (primary.workers().has(killed) ? undefined : true), 15_000, "the primary to see the worker die");
      expect(primary.events).toContainEqual(expect.objectContaining({ msg: "worker exited", worker: killed, signal: "SIGKILL" }));

      // Until the dead worker's lease expires, the other workers answer 503 owner_unreachable.
      const refused: Reply[] = [];
      const first = await eventually(
        async () => {
          const reply = await request(port, key);
          if (reply.status === 200) return reply;
          refused.push(reply);
          await delay(100);
          return undefined;
        },
        15_000,
        "the takeover",
      );
      expect(refused.length).toBeGreaterThan(0);
      for (const reply of refused) {
        expect([reply.status, reply.body.code]).toEqual([503, "owner_unreachable"]);
        expect(Number(reply.retryAfter)).toBeGreaterThanOrEqual(1);
      }
      // Refused requests never reached the actor: the count goes on from the last acknowledged one.
      expected += 1;
      expect(first.body.count).toBe(expected);
      expect(first.body.activations).toEqual([killed, first.body.owner]);

      const workers = await primary.ready(2, [killed]);
      expect(workers.has(survivor)).toBe(true);
      expect([...workers.keys()]).toContain(first.body.owner);
      const replies = await increments(20);
      expect(new Set(replies.map((r) => r.body.edge))).toEqual(new Set(workers.keys()));
      for (const reply of replies) expect(reply.body.activations).toEqual([killed, first.body.owner]);
    });

    test("SIGTERM to the primary: the workers close their sockets with 1012, shut down cleanly and release their leases; a new cluster serves at once", async () => {
      const primary = primaries[0];
      const workers = [...primary.workers().keys()];
      // Both workers own an actor: each takes the lease of the keys it receives first.
      const owners = new Set<number>();
      for (let i = 0; owners.size < 2; i++) {
        expect(i).toBeLessThan(20);
        const reply = await request(port, `other-${i}`);
        expect(reply.status).toBe(200);
        owners.add(reply.body.owner);
      }
      const before = await clusterKeys(prefix);
      expect(before.leases).toBeGreaterThanOrEqual(3);
      expect(before.nodes).toEqual(expect.arrayContaining(workers));

      // Open sockets, one accepted by each worker: a drain closes both with 1012, so clients reconnect.
      const sockets = [new Socket(port, key), new Socket(port, key)];
      const greetings = await Promise.all(sockets.map((socket) => socket.next()));
      expect(new Set(greetings.map((g) => g.edge))).toEqual(new Set(workers));

      const logged = primary.stderr.length;
      primary.signal("SIGTERM");
      expect(await primary.exit).toEqual({ code: 0, signal: null });
      expect(primary.stderr.slice(logged)).toBe("");
      for (const socket of sockets) expect(await socket.closed).toEqual([1012, "service_restart"]);
      for (const pid of workers) {
        expect(primary.events).toContainEqual({ msg: "worker exited", pid: primary.pid, worker: pid, code: 0, signal: null });
        expect(alive(pid)).toBe(false);
      }
      // The SIGKILLed worker's record may linger until its TTL; the two that stopped are gone.
      const after = await clusterKeys(prefix);
      expect(after.leases).toBe(0);
      for (const pid of workers) expect(after.nodes).not.toContain(pid);

      // No lease left to wait for: the first request to a new cluster is served, with the saved count.
      const next = await start();
      const reply = await request(port, key);
      expect(reply.status).toBe(200);
      expected += 1;
      expect(reply.body.count).toBe(expected);
      expect(reply.body.activations).toHaveLength(3);
      expect([...next.workers().keys()]).toContain(reply.body.owner);
    });
  });
});
