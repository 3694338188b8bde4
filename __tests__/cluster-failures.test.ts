import { Pool } from "pg";
import { ClusterNode, delay, eventually, startNodes, type NodeEnv } from "./helpers/cluster-harness";
import { OwnRedis, REDIS_URL, deletePrefix, describeWithService, tempDatabase, uniqueName } from "./helpers/services";

jest.setTimeout(90_000);

const LEASE_MS = 1500;

describeWithService("postgres", "cluster failures", () => {
  describeWithService("redis", "on real processes", () => {
    let db: Awaited<ReturnType<typeof tempDatabase>>;
    let running: ClusterNode[] = [];
    const prefixes: string[] = [];

    beforeAll(async () => {
      db = await tempDatabase();
    });
    afterEach(async () => {
      await Promise.all(running.map((node) => node.kill()));
      running = [];
    });
    afterAll(async () => {
      await db?.drop();
      for (const prefix of prefixes) await deletePrefix(prefix);
    });

    /** Two fresh nodes; the first request for `key` goes to the first, which becomes its owner. */
    async function cluster(key: string, env: Partial<NodeEnv> = {}) {
      const prefix = uniqueName("ea_fail") + ":";
      prefixes.push(prefix);
      const [a, b] = (running = await startNodes(2, { REDIS_URL, PREFIX: prefix, PG_URL: db.url, LEASE_MS: String(LEASE_MS), ...env }));
      expect((await a.json(key, "/")).node).toBe(a.name);
      return { a, b };
    }

    /** The actor's state and epoch as the shared store holds them. */
    async function stored(key: string) {
      const pool = new Pool({ connectionString: db.url, max: 1 });
      try {
        const { rows } = await pool.query("SELECT state, epoch FROM express_actors WHERE meta::json->'key'->>0 = $1", [key]);
        return { state: JSON.parse(rows[0].state), epoch: Number(rows[0].epoch) };
      } finally {
        await pool.end();
      }
    }

    test("owner killed with SIGKILL: another node takes over after the lease, with every acknowledged write", async () => {
      const key = "killed";
      const { a, b } = await cluster(key);
      for (let i = 1; i <= 5; i++) expect((await b.json(key, "/inc", { method: "POST" })).count).toBe(i);
      await a.kill();

      const statuses = new Set<number>();
      const taken = await eventually(async () => {
        const res = await b.fetch(key, "/inc", { method: "POST" });
        statuses.add(res.status);
        if (res.status === 503) {
          expect(await res.json()).toMatchObject({ code: "owner_unreachable" });
          expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
          return undefined;
        }
        expect(res.status).toBe(200);
        return res.json();
      }, LEASE_MS + 5000, "the takeover");
      expect([...statuses].every((s) => s === 503 || s === 200)).toBe(true);
      // Refused requests never reached an actor: the count goes on from the last acknowledged one.
      expect(taken).toMatchObject({ count: 6, node: b.name, activations: [a.name, b.name] });
    });

    test("owner frozen past its lease: it stops serving, its late write is fenced, the new owner's writes survive", async () => {
      const key = "frozen";
      const { a, b } = await cluster(key);
      for (let i = 1; i <= 3; i++) expect((await b.json(key, "/inc", { method: "POST" })).count).toBe(i);
      const before = await stored(key);
      // A stream the owner is serving when it freezes.
      const stream = (await a.fetch(key, "/sse")).body!.getReader();
      await stream.read();

      // A request in the middle of its handler on the owner when it freezes; it writes after it wakes.
      const late = a.fetch(key, "/slow-inc?ms=500", { method: "POST" });
      await delay(150);
      a.signal("SIGSTOP");
      await delay(LEASE_MS + 500);

      expect(await b.json(key, "/inc", { method: "POST" })).toMatchObject({ count: 4, node: b.name });
      expect(await b.json(key, "/inc", { method: "POST" })).toMatchObject({ count: 5, node: b.name });
      a.signal("SIGCONT");

      // The stream ends: the old owner stops serving the actor, streams included.
      expect(await stream.read().then((r) => r.done, () => true)).toBe(true);
      const answer = await late;
      expect(answer.status).toBe(503);
      expect(await answer.json()).toMatchObject({ code: "lease_lost" });
      // The old owner never answers for the actor again: through it, the new owner does.
      expect(await a.json(key, "/")).toMatchObject({ count: 5, node: b.name });
      expect(await b.json(key, "/inc", { method: "POST" })).toMatchObject({ count: 6, node: b.name });

      const after = await stored(key);
      expect(after.state).toMatchObject({ count: 6, activations: [a.name, b.name] });
      expect(after.epoch).toBeGreaterThan(before.epoch);
      expect(a.stderr).toMatch(/lease on the actor is gone|fenced/);
    });

    test("registry.shutdown() releases its leases: another node takes over at once", async () => {
      const key = "drained";
      const { a, b } = await cluster(key);
      expect((await b.json(key, "/inc", { method: "POST" })).count).toBe(1);
      expect((await fetch(`http://127.0.0.1:${a.port}/shutdown`, { method: "POST" })).status).toBe(200);
      await a.exited();
      // Without the release, the lease would name a node that is gone: 503 owner_unreachable.
      expect(await b.json(key, "/inc", { method: "POST" })).toMatchObject({ count: 2, node: b.name, activations: [a.name, b.name] });
    });

    test("sleep releases the lease: the next request anywhere activates the actor where it lands", async () => {
      const key = "sleepy";
      const { a, b } = await cluster(key, { SLEEP_MS: "200" });
      expect((await a.json(key, "/inc", { method: "POST" })).count).toBe(1);
      await delay(600);
      expect(await b.json(key, "/inc", { method: "POST" })).toMatchObject({ count: 2, node: b.name, activations: [a.name, b.name] });
    });

    test("Redis unreachable: 503 cluster_unavailable and health 503, then service resumes by itself with the state intact", async () => {
      const redis = await OwnRedis.start();
      try {
        const key = "outage";
        const { a, b } = await cluster(key, { REDIS_URL: redis.url });
        expect((await b.json(key, "/inc", { method: "POST" })).count).toBe(1);
        await redis.kill();

        for (const node of [a, b]) {
          await eventually(async () => ((await fetch(`${node.url}/health`)).status === 503 ? true : undefined), LEASE_MS + 5000, "health 503");
          const body = await eventually(async () => {
            const res = await node.fetch(key, "/");
            return res.status === 503 ? res.json() : undefined;
          }, LEASE_MS + 5000, "a 503");
          expect(body).toMatchObject({ code: "cluster_unavailable" });
        }

        // A new Redis with none of the old keys: epochs still grow, so the store accepts the new owner.
        await redis.restart();
        for (const node of [a, b]) {
          await eventually(async () => ((await fetch(`${node.url}/health`)).status === 200 ? true : undefined), 15_000, "health 200");
        }
        expect((await b.json(key, "/inc", { method: "POST" })).count).toBe(2);
        expect((await a.json(key, "/inc", { method: "POST" })).count).toBe(3);
      } finally {
        await redis.kill();
      }
    });

    test("Redis paused: calls time out into 503 cluster_unavailable, and service resumes when it answers again", async () => {
      const redis = await OwnRedis.start();
      try {
        const key = "paused";
        const { a, b } = await cluster(key, { REDIS_URL: redis.url });
        expect((await b.json(key, "/inc", { method: "POST" })).count).toBe(1);
        redis.signal("SIGSTOP");
        for (const node of [a, b]) {
          const body = await eventually(async () => {
            const res = await node.fetch(key, "/");
            return res.status === 503 ? res.json() : undefined;
          }, LEASE_MS + 5000, "a 503");
          expect(body).toMatchObject({ code: "cluster_unavailable" });
          expect((await fetch(`${node.url}/health`)).status).toBe(503);
        }
        redis.signal("SIGCONT");
        for (const node of [a, b]) {
          await eventually(async () => ((await fetch(`${node.url}/health`)).status === 200 ? true : undefined), 15_000, "health 200");
        }
        expect((await b.json(key, "/inc", { method: "POST" })).count).toBe(2);
      } finally {
        redis.signal("SIGCONT");
        await redis.kill();
      }
    });
  });
});
