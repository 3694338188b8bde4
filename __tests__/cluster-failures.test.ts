import { performance } from "node:perf_hooks";
import { Pool } from "pg";
import { ClusterNode, delay, eventually, leasesHeld, startNodes, within, type NodeEnv } from "./helpers/cluster-harness";
import { OwnRedis, REDIS_URL, deletePrefix, describeWithService, tempDatabase, uniqueName } from "./helpers/services";

jest.setTimeout(90_000);

const LEASE_MS = 1500;
/** The pause between two polls of eventually(). */
const POLL_MS = 50;
const POST = { method: "POST" };

// Every scenario runs on three processes: n1 owns the actor, n2 takes it over (or is where the
// next request lands), and n3 serves the actor throughout, forwarding to whichever node owns it.
describeWithService("postgres", "cluster failures", () => {
  describeWithService("redis", "on three real processes", () => {
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

    /** Three fresh nodes; the first request for `key` goes to the first, which becomes its owner. */
    async function cluster(key: string, env: Partial<NodeEnv> = {}) {
      const prefix = uniqueName("ea_fail") + ":";
      prefixes.push(prefix);
      const [a, b, c] = (running = await startNodes(3, { REDIS_URL, PREFIX: prefix, PG_URL: db.url, LEASE_MS: String(LEASE_MS), ...env }));
      expect((await a.json(key, "/")).node).toBe(a.name);
      return { a, b, c, prefix };
    }

    /** The actor's state and epoch as PostgreSQL holds them. */
    async function stored(key: string) {
      const pool = new Pool({ connectionString: db.url, max: 1 });
      try {
        const { rows } = await pool.query("SELECT state, epoch FROM express_actors WHERE meta::json->'key'->>0 = $1", [key]);
        return { state: JSON.parse(rows[0].state), epoch: Number(rows[0].epoch) };
      } finally {
        await pool.end();
      }
    }

    /** POST /inc through each node in turn; each must be acknowledged by `owner` with the next count. */
    async function incThrough(nodes: ClusterNode[], key: string, owner: ClusterNode, acked: { count: number }) {
      for (const node of nodes) {
        expect(await node.json(key, "/inc", POST)).toMatchObject({ count: ++acked.count, node: owner.name });
      }
    }

    const health = async (node: ClusterNode) => (await fetch(`${node.url}/health`)).status;

    test("owner killed with SIGKILL: a second node takes over within leaseMs + 1 s with every acknowledged write, a third forwards to it", async () => {
      const key = "killed";
      const { a, b, c } = await cluster(key);
      const acked = { count: 0 };
      await incThrough([b, c, a, b, c], key, a, acked);
      const before = await stored(key);

      const killedAt = performance.now();
      await a.kill();
      const statuses = new Set<number>();
      const taken = await eventually(async () => {
        const res = await b.fetch(key, "/inc", POST);
        statuses.add(res.status);
        if (res.status === 503) {
          // The lease still names the dead node: refused, never served by a second owner.
          expect(await res.json()).toMatchObject({ code: "owner_unreachable" });
          expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
          return undefined;
        }
        expect(res.status).toBe(200);
        return res.json();
      }, LEASE_MS + 5000, "the takeover");
      const takeoverMs = performance.now() - killedAt;
      // The lease was last renewed before the kill, so it ends within leaseMs of it (SPEC §9).
      expect(takeoverMs).toBeLessThanOrEqual(LEASE_MS + 1000 + POLL_MS);
      expect([...statuses].every((s) => s === 503 || s === 200)).toBe(true);
      // Refused requests never reached an actor: the count goes on from the last acknowledged one.
      expect(taken).toMatchObject({ count: ++acked.count, node: b.name, activations: [a.name, b.name] });

      // The third node keeps serving the actor, through its new owner.
      await incThrough([c, b, c], key, b, acked);
      expect(await c.json(key, "/")).toMatchObject({ count: acked.count, node: b.name, activations: [a.name, b.name] });
      const after = await stored(key);
      expect(after.state).toMatchObject({ count: acked.count, activations: [a.name, b.name] });
      expect(after.epoch).toBeGreaterThan(before.epoch);
    });

    test("owner frozen past its lease: it stops serving by itself, its late writes are fenced, the final state holds every acknowledged write and nothing else", async () => {
      // Two actors on the frozen owner: one caught in the middle of a write (stopped by the fenced
      // save), one idle with open streams (stopped by the lapse of its lease alone).
      const key = "frozen";
      const idle = "frozen-idle";
      const { a, b, c, prefix } = await cluster(key);
      expect((await a.json(idle, "/")).node).toBe(a.name);
      const acked: Record<string, { count: number }> = { [key]: { count: 0 }, [idle]: { count: 0 } };
      for (const k of [key, idle]) await incThrough([b, c, a], k, a, acked[k]);
      const before: Record<string, { epoch: number }> = { [key]: await stored(key), [idle]: await stored(idle) };
      // Streams the owner is serving when it freezes: one straight from it, one through the third node.
      const streams = await Promise.all([a, c].map(async (node) => {
        const reader = (await node.fetch(idle, "/sse")).body!.getReader();
        await reader.read();
        return reader;
      }));

      // A request in the middle of its handler on the owner when it freezes; it writes after it wakes.
      const late = a.fetch(key, "/slow-inc?ms=500", POST);
      await delay(150);
      a.signal("SIGSTOP");
      // Its leases run out in Redis: nobody renews them any more.
      await eventually(async () => ((await leasesHeld(prefix)) === 0 ? true : undefined), LEASE_MS + 5000, "the frozen owner's leases to expire");

      // The second node takes over; the third forwards to it; both while the old owner is frozen.
      for (const k of [key, idle]) await incThrough([b, c, b, c], k, b, acked[k]);
      a.signal("SIGCONT");

      // The streams end: the old owner stops serving the actor, streams included.
      for (const stream of streams) {
        expect(await within(5000, stream.read().then((r) => r.done, () => true), "the stream to end")).toBe(true);
      }
      const answer = await late;
      expect(answer.status).toBe(503);
      expect(await answer.json()).toMatchObject({ code: "lease_lost" });
      expect((await stored(key)).state.count).toBe(acked[key].count);

      // The old owner never answers for the actors itself again: it forwards to the new owner, or refuses.
      for (const node of [a, c, a, b, a, c]) {
        for (const k of [key, idle]) {
          const res = await node.fetch(k, "/inc", POST);
          const body = await res.json();
          if (node === a && res.status === 503) continue;
          expect(res.status).toBe(200);
          expect(body).toMatchObject({ count: ++acked[k].count, node: b.name });
        }
      }

      for (const k of [key, idle]) {
        const after = await stored(k);
        // Every acknowledged write, and none of the old owner's late ones (its +100, its stream cancels).
        expect(after.state).toMatchObject({ count: acked[k].count, activations: [a.name, b.name], cancelled: 0 });
        expect(after.epoch).toBeGreaterThan(before[k].epoch);
      }
      expect(a.stderr).toMatch(/fenced/);
      expect(a.stderr).toMatch(/lease on the actor is gone/);
    });

    test("registry.shutdown() releases its leases: a second node takes over at once, a third forwards to it", async () => {
      const key = "drained";
      const { a, b, c } = await cluster(key);
      const acked = { count: 0 };
      await incThrough([b, c], key, a, acked);
      expect((await fetch(`http://127.0.0.1:${a.port}/shutdown`, POST)).status).toBe(200);
      await a.exited();
      // Without the release, the lease would name a node that is gone: 503 owner_unreachable.
      expect(await b.json(key, "/inc", POST)).toMatchObject({ count: ++acked.count, node: b.name, activations: [a.name, b.name] });
      await incThrough([c, b], key, b, acked);
    });

    test("sleep releases the lease: the next request anywhere activates the actor where it lands, a third node forwards there", async () => {
      const key = "sleepy";
      const { a, b, c, prefix } = await cluster(key, { SLEEP_MS: "200" });
      expect((await a.json(key, "/inc", POST)).count).toBe(1);
      await eventually(async () => ((await leasesHeld(prefix)) === 0 ? true : undefined), 10_000, "the actor to sleep");
      // An open stream keeps the actor awake on its new node while the third node's requests arrive.
      const res = await b.fetch(key, "/sse");
      const stream = res.body!.getReader();
      expect(new TextDecoder().decode((await stream.read()).value)).toBe(`data: first from ${b.name}\n\n`);
      expect(await c.json(key, "/inc", POST)).toMatchObject({ count: 2, node: b.name, activations: [a.name, b.name] });
      await c.json(key, "/release", POST);
      expect((await stream.read()).done).toBe(false);
      expect((await stream.read()).done).toBe(true);
    });

    /**
     * With Redis gone from `stoppedAt` on: POST /inc through the owner until it refuses. Its lease was
     * last renewed before `stoppedAt`, so none of its writes may be served from stoppedAt + leaseMs on.
     */
    async function ownerStops(owner: ClusterNode, key: string, stoppedAt: number, acked: { count: number }) {
      const served: number[] = [];
      const refusal = await eventually(async () => {
        const sent = performance.now() - stoppedAt;
        const res = await owner.fetch(key, "/inc", POST);
        const body = await res.json();
        if (res.status === 503) return body;
        expect(res.status).toBe(200);
        expect(body).toMatchObject({ count: ++acked.count, node: owner.name });
        served.push(sent);
        return undefined;
      }, LEASE_MS + 5000, "the owner to stop serving");
      expect(refusal).toMatchObject({ code: "cluster_unavailable" });
      for (const sent of served) expect(sent).toBeLessThan(LEASE_MS);
    }

    /** Health 503 on every node; any request that needs placement, there or anywhere, gets 503 cluster_unavailable. */
    async function unavailable(nodes: ClusterNode[], key: string) {
      for (const node of nodes) {
        await eventually(async () => ((await health(node)) === 503 ? true : undefined), LEASE_MS + 5000, `health 503 on ${node.name}`);
        for (const k of [key, `${key}-new`]) {
          const res = await node.fetch(k, "/inc", POST);
          expect(res.status).toBe(503);
          expect(await res.json()).toMatchObject({ code: "cluster_unavailable" });
        }
      }
    }

    async function allHealthy(nodes: ClusterNode[]) {
      for (const node of nodes) {
        await eventually(async () => ((await health(node)) === 200 ? true : undefined), 15_000, `health 200 on ${node.name}`);
      }
    }

    test("Redis stopped: owners stop serving before their leases could expire, 503 cluster_unavailable and health 503 everywhere, then service resumes by itself with the state intact", async () => {
      const redis = await OwnRedis.start();
      try {
        const key = "outage";
        const { a, b, c } = await cluster(key, { REDIS_URL: redis.url });
        const acked = { count: 0 };
        await incThrough([b, c, a], key, a, acked);

        const stoppedAt = performance.now();
        await redis.kill();
        await ownerStops(a, key, stoppedAt, acked);
        await unavailable([a, b, c], key);

        // A new Redis with none of the old keys: epochs still grow, so the store accepts the new owner.
        await redis.restart();
        await allHealthy([a, b, c]);
        // Every write the owner acknowledged, during the outage too, is there.
        expect(await b.json(key, "/inc", POST)).toMatchObject({ count: ++acked.count, node: b.name, activations: [a.name, b.name] });
        await incThrough([c, a, b], key, b, acked);
        expect((await stored(key)).state).toMatchObject({ count: acked.count, activations: [a.name, b.name], cancelled: 0 });
      } finally {
        await redis.kill();
      }
    });

    test("Redis paused: owners stop serving before their leases could expire, calls time out into 503 cluster_unavailable, and service resumes when it answers again", async () => {
      const redis = await OwnRedis.start();
      try {
        const key = "paused";
        const { a, b, c } = await cluster(key, { REDIS_URL: redis.url });
        const acked = { count: 0 };
        await incThrough([b, c, a], key, a, acked);

        const stoppedAt = performance.now();
        redis.signal("SIGSTOP");
        await ownerStops(a, key, stoppedAt, acked);
        await unavailable([a, b, c], key);

        redis.signal("SIGCONT");
        await allHealthy([a, b, c]);
        // Calls that timed out still ran once Redis woke, so which node owns the actor now is open;
        // there is exactly one, and it has every acknowledged write.
        const first = await b.json(key, "/inc", POST);
        expect(first.count).toBe(++acked.count);
        const owner = running.find((node) => node.name === first.node)!;
        await incThrough([c, a, b], key, owner, acked);
        const { state } = await stored(key);
        expect(state.count).toBe(acked.count);
        expect(state.activations).toEqual([a.name, owner.name]);
      } finally {
        redis.signal("SIGCONT");
        await redis.kill();
      }
    });
  });
});
