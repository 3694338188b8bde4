import * as path from "node:path";
import { Redis } from "ioredis";
import { ClusterNode, eventually, startNodes, type NodeEnv } from "./helpers/cluster-harness";
import { parseMetrics, sampleValue } from "./helpers/metrics-text";
import { OwnRedis, describeWithService, tempDatabase, uniqueName } from "./helpers/services";

jest.setTimeout(90_000);

// Long enough that an edge remembers an owner well past the moments each test moves the actor.
const LEASE_MS = 6000;

/** Lease scripts (claims, renewals, releases) Redis has run so far. */
async function scriptCalls(url: string): Promise<number> {
  const redis = new Redis(url);
  try {
    const stats = await redis.info("commandstats");
    return [...stats.matchAll(/^cmdstat_eval(?:sha)?:calls=(\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
  } finally {
    redis.disconnect();
  }
}

const post = { method: "POST" };

describeWithService("postgres", "an edge that remembers which node owns an actor", () => {
  describeWithService("redis", "on real processes", () => {
    let db: Awaited<ReturnType<typeof tempDatabase>>;
    let redis: OwnRedis;
    let running: ClusterNode[] = [];
    let prefix = "";

    beforeAll(async () => {
      db = await tempDatabase();
      redis = await OwnRedis.start();
    });
    afterEach(async () => {
      await Promise.all(running.map((node) => node.kill()));
      running = [];
    });
    afterAll(async () => {
      await redis?.kill();
      await db?.drop();
    });

    const cluster = async (count: number, env: Partial<NodeEnv> = {}) => {
      prefix = uniqueName("ea_known") + ":";
      return (running = await startNodes(count, { REDIS_URL: redis.url, PREFIX: prefix, PG_URL: db.url, LEASE_MS: String(LEASE_MS), ...env }));
    };

    /** Two nodes with metrics and tracing on (fixtures/cluster-observed-node.ts). */
    const observedCluster = async () => {
      const env = { REDIS_URL: redis.url, PREFIX: uniqueName("ea_known") + ":", PG_URL: db.url, LEASE_MS: String(LEASE_MS) };
      const fixture = path.join(__dirname, "fixtures", "cluster-observed-node.ts");
      return (running = await Promise.all(["n1", "n2"].map((name) => ClusterNode.start(name, env, undefined, fixture))));
    };

    /** Whether anyone holds the lease of `key`'s counter (asked of Redis, so the actor is not woken). */
    async function leased(node: ClusterNode, key: string): Promise<boolean> {
      const res = await fetch(`${node.url}/actors/resolve`, {
        method: "POST",
        headers: { "x-rivetkit-actor-query": JSON.stringify({ getForKey: { name: "counter", key: [key] } }) },
      });
      const { actorId } = await res.json();
      const client = new Redis(redis.url);
      try {
        return (await client.exists(`${prefix}lease:${actorId}`)) === 1;
      } finally {
        client.disconnect();
      }
    }

    test("hops to a known owner ask Redis nothing while its lease lasts, and count exactly", async () => {
      const [a, b] = await cluster(2);
      const key = "remembered";
      expect((await a.json(key, "/inc", post)).node).toBe(a.name);
      expect((await b.json(key, "/")).node).toBe(a.name);

      const before = await scriptCalls(redis.url);
      const started = Date.now();
      for (let i = 2; i <= 41; i++) expect(await b.json(key, "/inc", i % 2 ? post : {})).toMatchObject({ count: i, node: a.name });
      const calls = (await scriptCalls(redis.url)) - before;
      // Only the two nodes' heartbeats (every leaseMs / 3): no claim per request.
      const heartbeats = 2 * (Math.ceil((Date.now() - started) / (LEASE_MS / 3)) + 1);
      expect(calls).toBeLessThanOrEqual(heartbeats);
      expect(await a.json(key, "/")).toMatchObject({ count: 41, activations: [a.name] });
    });

    test("the owner shuts down: the edge that remembered it takes the actor over at once, for every kind of request", async () => {
      const [a, b] = await cluster(2);
      const keys = { get: "moved-get", post: "moved-post", parsed: "moved-parsed", client: "moved-client" };
      for (const key of Object.values(keys)) expect((await a.json(key, "/inc", post)).node).toBe(a.name);
      // b learns that a owns each of them; c.client() on b calls the counter of the relay's own key.
      for (const key of [keys.get, keys.post, keys.parsed]) expect((await b.json(key, "/")).node).toBe(a.name);
      const relay = (key: string) =>
        fetch(`${b.url}/actors/raw/http/`, { headers: { "x-rivetkit-actor-query": JSON.stringify({ getOrCreateForKey: { name: "relay", key: [key] } }) } });
      expect(await (await relay(keys.client)).json()).toMatchObject({ relayedBy: b.name, status: 200, body: { count: 2, node: a.name } });

      expect((await fetch(`http://127.0.0.1:${a.port}/shutdown`, { method: "POST" })).status).toBe(200);
      await a.exited();

      // A connection b kept open to a closes as a exits; a request b sends on it in that very instant
      // gets 503 owner_unreachable (it might have reached a, so it is not sent again). Any request b
      // answers after that has let it see the close.
      expect((await fetch(`${b.url}/health`)).status).toBe(200);

      expect(await b.json(keys.get, "/")).toMatchObject({ count: 1, node: b.name, activations: [a.name, b.name] });
      expect(await b.json(keys.post, "/inc", post)).toMatchObject({ count: 2, node: b.name, activations: [a.name, b.name] });
      // A body express.json() already read is rebuilt, so it can be sent again.
      const parsed = await fetch(`http://127.0.0.1:${b.port}/counters/${keys.parsed}/request`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ hello: "again" }),
      });
      expect(parsed.status).toBe(200);
      expect(await parsed.json()).toMatchObject({ node: b.name, body: JSON.stringify({ hello: "again" }) });
      expect(await (await relay(keys.client)).json()).toMatchObject({ status: 200, body: { count: 3, node: b.name, activations: [a.name, b.name] } });
    });

    test("an actor that moved to a third node: the edge that remembered the old owner follows it, and no node runs it twice", async () => {
      const [a, b, c] = await cluster(3, { SLEEP_MS: "1500", LEASE_MS: "10000" });
      const key = "wanderer";
      expect((await a.json(key, "/inc", post)).node).toBe(a.name);
      expect((await b.json(key, "/inc", post)).node).toBe(a.name);
      // Left alone, it sleeps on a (releasing its lease); then c activates it.
      await eventually(async () => ((await leased(a, key)) ? undefined : true), 8000, "the actor to sleep");
      expect(await c.json(key, "/")).toMatchObject({ node: c.name, activations: [a.name, c.name] });

      // b still remembers a, which refuses the hop unserved; b asks again and reaches c.
      const res = await b.fetch(key, "/inc", post);
      expect(res.status).toBe(200);
      expect([...res.headers.keys()].filter((name) => name.startsWith("x-rivetkit-"))).toEqual([]);
      expect(await res.json()).toMatchObject({ count: 3, node: c.name, activations: [a.name, c.name] });
      expect(await b.json(key, "/inc", post)).toMatchObject({ count: 4, node: c.name });
    });

    test("an actor that fell asleep wakes where the next request lands, even on an edge that remembered its owner", async () => {
      const [a, b] = await cluster(2, { SLEEP_MS: "1500", LEASE_MS: "10000" });
      const key = "sleeper";
      expect((await a.json(key, "/inc", post)).node).toBe(a.name);
      expect((await b.json(key, "/inc", post)).node).toBe(a.name);
      // Asleep on a, its lease released; a does not wake it for b's hop, b does.
      await eventually(async () => ((await leased(a, key)) ? undefined : true), 8000, "the actor to sleep");
      expect(await b.json(key, "/inc", post)).toMatchObject({ count: 3, node: b.name, activations: [a.name, b.name] });
    });

    test("observed: a hop to a remembered owner that is gone counts as no forward and no unreachable owner; its span says stale", async () => {
      const [a, b] = await observedCluster();
      const origin = (node: ClusterNode) => `http://127.0.0.1:${node.port}`;
      const inc = async (node: ClusterNode) => {
        const res = await fetch(`${node.url}/actors/raw/http/inc`, {
          method: "POST",
          headers: { "x-rivetkit-actor-query": JSON.stringify({ getOrCreateForKey: { name: "counter", key: ["observed"] } }) },
        });
        expect(res.status).toBe(200);
        return res.json();
      };
      expect(await inc(a)).toMatchObject({ count: 1, node: a.name });
      expect(await inc(b)).toMatchObject({ count: 2, node: a.name });
      expect((await fetch(`${origin(a)}/shutdown`, { method: "POST" })).status).toBe(200);
      await a.exited();
      expect((await fetch(`${b.url}/health`)).status).toBe(200);
      expect(await inc(b)).toMatchObject({ count: 3, node: b.name });

      const samples = parseMetrics(await (await fetch(`${origin(b)}/metrics`)).text());
      const forwards = (outcome: string) => sampleValue(samples, "express_actors_cluster_forwarded_requests_total", { actor: "counter", outcome });
      expect(forwards("2xx")).toBe(1);
      expect(forwards("unreachable")).toBeUndefined();
      const spans: Array<{ name: string; status: number; attributes: Record<string, unknown> }> = await (await fetch(`${origin(b)}/spans`)).json();
      const hops = spans.filter((span) => span.name === "actor.forward");
      expect(hops.map((span) => span.attributes["http.response.status_code"] ?? span.attributes["actor.forward.outcome"])).toEqual([200, "stale"]);
      // Unset (0), not ERROR (2): the request was served.
      expect(hops[1].status).toBe(0);
    });

    test("the owner is killed: the edge answers 503 owner_unreachable only until the lease ends, then serves the actor", async () => {
      const [a, b] = await cluster(2);
      const key = "orphan";
      expect((await a.json(key, "/inc", post)).node).toBe(a.name);
      expect((await b.json(key, "/inc", post)).count).toBe(2);
      await a.kill();

      const refusals = new Set<string>();
      const taken = await eventually(
        async () => {
          const res = await b.fetch(key, "/inc", post);
          if (res.status === 503) {
            refusals.add((await res.json()).code);
            expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
            return undefined;
          }
          expect(res.status).toBe(200);
          return res.json();
        },
        LEASE_MS + 5000,
        "the takeover",
      );
      expect([...refusals]).toEqual(["owner_unreachable"]);
      expect(taken).toMatchObject({ count: 3, node: b.name, activations: [a.name, b.name] });
    });
  });
});
