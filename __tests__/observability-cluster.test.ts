import { randomBytes } from "node:crypto";
import * as path from "node:path";
import { Redis } from "ioredis";
import WebSocket from "ws";
import { FORWARD_HEADER } from "../lib/cluster/signing";
import { ClusterNode, delay, eventually, SECRET } from "./helpers/cluster-harness";
import { parseMetrics, sampleValue } from "./helpers/metrics-text";
import { REDIS_URL, deletePrefix, describeWithService, tempDatabase, uniqueName } from "./helpers/services";

// Issue 15 in a cluster: three node processes, each with a pino logger, a prom-client registry and
// an in-memory OpenTelemetry exporter. One trace crosses the forwarding hop (edge → owner → store),
// the cluster's metrics count a scripted sequence exactly, and every log line names its node.

jest.setTimeout(90_000);

const FIXTURE = path.join(__dirname, "fixtures", "cluster-observed-node.ts");
const LEASE_MS = 1000;

interface SpanRecord {
  name: string;
  kind: number;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  attributes: Record<string, unknown>;
  status: number;
}

const CLIENT = 2;
const SERVER = 1;
/** Sent as `x-user` with every request: onAuth makes it the auth data the hop carries, signed. */
const AUTH_SECRET = "auth-secret-3b9d71";

/** No line may carry the cluster secret, a signed forward header (or its name), or auth data. */
function expectClean(text: string) {
  for (const line of text.split("\n")) {
    expect(line).not.toContain(SECRET);
    expect(line).not.toContain(FORWARD_HEADER);
    expect(line).not.toContain(AUTH_SECRET);
    // A signed forward header: base64url claims, a dot, a base64url HMAC-SHA256.
    expect(line).not.toMatch(/[\w-]{40,}\.[\w-]{43}/);
  }
}

describeWithService("postgres", "observability of a cluster", () => {
  describeWithService("redis", "three observed nodes over one Redis", () => {
    let db: Awaited<ReturnType<typeof tempDatabase>>;
    let nodes: ClusterNode[];
    let redis: Redis;
    const prefix = uniqueName("ea_obs") + ":";

    beforeAll(async () => {
      db = await tempDatabase();
      const env = { REDIS_URL, PREFIX: prefix, PG_URL: db.url, LEASE_MS: String(LEASE_MS) };
      nodes = await Promise.all(["n1", "n2", "n3"].map((name) => ClusterNode.start(name, env, undefined, FIXTURE)));
      redis = new Redis(REDIS_URL);
    });
    afterAll(async () => {
      await Promise.all((nodes ?? []).map((node) => node.kill()));
      redis?.disconnect();
      await db?.drop();
      await deletePrefix(prefix);
    });

    const call = (node: ClusterNode, name: string, key: string, actorPath: string, headers: Record<string, string> = {}) =>
      fetch(`${node.url}/actors/raw/http${actorPath}`, {
        method: "POST",
        headers: { "x-user": AUTH_SECRET, ...headers, "x-rivetkit-actor-query": JSON.stringify({ getOrCreateForKey: { name, key: [key] } }) },
      });
    const ok = async (node: ClusterNode, name: string, key: string, actorPath: string, headers: Record<string, string> = {}) => {
      const res = await call(node, name, key, actorPath, headers);
      const text = await res.text();
      if (res.status !== 200) throw new Error(`${node.name} ${name} ${actorPath}: ${res.status} ${text}\n${node.stderr}`);
      return JSON.parse(text);
    };
    const origin = (node: ClusterNode) => `http://127.0.0.1:${node.port}`;
    const spansOf = async (node: ClusterNode, traceId: string): Promise<SpanRecord[]> =>
      ((await (await fetch(`${origin(node)}/spans`)).json()) as SpanRecord[]).filter((s) => s.traceId === traceId);
    const logsOf = async (node: ClusterNode) => {
      const text = await (await fetch(`${origin(node)}/logs`)).text();
      return { text, records: text.trim().split("\n").map((line) => JSON.parse(line) as Record<string, any>) };
    };
    const scrape = async (node: ClusterNode) => {
      const text = await (await fetch(`${origin(node)}/metrics`)).text();
      const samples = parseMetrics(text);
      return { text, value: (name: string, labels: Record<string, string> = {}) => sampleValue(samples, name, labels) };
    };

    /** A client's own trace: the traceparent it sends, and the ids in it. */
    const clientTrace = () => {
      const traceId = randomBytes(16).toString("hex");
      const spanId = randomBytes(8).toString("hex");
      return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
    };

    /** Every node's spans of `traceId`, once `count` of them have ended. */
    const traceOf = (traceId: string, count: number) =>
      eventually(async () => {
        const all = (await Promise.all(nodes.slice(0, 3).map(async (node) => (await spansOf(node, traceId)).map((s) => ({ ...s, node: node.name })))))
          .flat();
        return all.length >= count ? all : undefined;
      }, 10_000, `${count} spans of trace ${traceId}`);
    const only = <T extends { name: string }>(spans: T[], name: string, where: (s: T) => boolean = () => true): T => {
      const found = spans.filter((s) => s.name === name && where(s));
      if (found.length !== 1) throw new Error(`expected one ${name}, found ${found.length}: ${JSON.stringify(spans, null, 1)}`);
      return found[0];
    };

    test("one trace across the hop: the edge's actor.forward is the parent of the owner's actor.fetch, and its save", async () => {
      const [n1, n2] = nodes;
      expect((await ok(n1, "traced", "t1", "/")).node).toBe("n1");
      const client = clientTrace();
      expect(await ok(n2, "traced", "t1", "/inc", { traceparent: client.traceparent })).toMatchObject({ count: 1, node: "n1" });

      const spans = await traceOf(client.traceId, 3);
      const forward = only(spans, "actor.forward");
      const fetched = only(spans, "actor.fetch");
      const saved = only(spans, "actor.save");
      expect(forward).toMatchObject({ node: "n2", kind: CLIENT, parentSpanId: client.spanId });
      expect(forward.attributes).toMatchObject({ "actor.name": "traced", "http.request.method": "POST", "http.response.status_code": 200 });
      expect(fetched).toMatchObject({ node: "n1", parentSpanId: forward.spanId });
      expect(saved).toMatchObject({ node: "n1", parentSpanId: fetched.spanId });
      expect(spans).toHaveLength(3);
    });

    test("with server spans on both nodes (HTTP instrumentation), the owner's server span sits under the edge's actor.forward", async () => {
      const [n1, , n3] = nodes;
      await ok(n1, "traced", "t2", "/");
      const client = clientTrace();
      await ok(n3, "traced", "t2", "/inc", { traceparent: client.traceparent, "x-server-span": "1" });

      const spans = await traceOf(client.traceId, 5);
      const edge = only(spans, "POST n3");
      const forward = only(spans, "actor.forward");
      const ownerServer = only(spans, "POST n1");
      const fetched = only(spans, "actor.fetch");
      expect(edge).toMatchObject({ node: "n3", kind: SERVER, parentSpanId: client.spanId });
      expect(forward).toMatchObject({ node: "n3", parentSpanId: edge.spanId });
      expect(ownerServer).toMatchObject({ node: "n1", kind: SERVER, parentSpanId: forward.spanId });
      expect(fetched).toMatchObject({ node: "n1", parentSpanId: ownerServer.spanId });
      expect(only(spans, "actor.save")).toMatchObject({ node: "n1", parentSpanId: fetched.spanId });
    });

    test("the server-side client's hop: an actor calling another node's actor stays in the caller's trace", async () => {
      const [n1, n2] = nodes;
      await ok(n1, "traced", "t3", "/");
      const client = clientTrace();
      const res = await fetch(`${n2.url}/actors/raw/http/?to=traced`, {
        headers: { traceparent: client.traceparent, "x-user": AUTH_SECRET, "x-rivetkit-actor-query": JSON.stringify({ getOrCreateForKey: { name: "relay", key: ["t3"] } }) },
      });
      expect(await res.json()).toMatchObject({ relayedBy: "n2", status: 200, body: { count: 1, node: "n1" } });

      const spans = await traceOf(client.traceId, 4);
      const caller = only(spans, "actor.fetch", (s) => s.attributes["actor.name"] === "relay");
      const forward = only(spans, "actor.forward");
      const callee = only(spans, "actor.fetch", (s) => s.attributes["actor.name"] === "traced");
      expect(caller).toMatchObject({ node: "n2", parentSpanId: client.spanId });
      expect(forward).toMatchObject({ node: "n2", kind: CLIENT, parentSpanId: caller.spanId });
      expect(callee).toMatchObject({ node: "n1", parentSpanId: forward.spanId });
      // The relay's own first save (a stateless actor's record) is under its actor.fetch.
      expect(only(spans, "actor.save", (s) => s.attributes["actor.name"] === "traced")).toMatchObject({ node: "n1", parentSpanId: callee.spanId });
    });

    test("a relayed WebSocket: the edge's actor.forward (until the handshake) is the parent of the owner's actor.websocket", async () => {
      const [n1, n2] = nodes;
      await ok(n1, "traced", "w1", "/");
      const client = clientTrace();
      const ws = new WebSocket(`ws://127.0.0.1:${n2.port}/registry/actors/raw/websocket/`, [], {
        headers: { traceparent: client.traceparent, "x-user": AUTH_SECRET, "x-rivetkit-actor-query": JSON.stringify({ getOrCreateForKey: { name: "traced", key: ["w1"] } }) },
      });
      const first = await new Promise<string>((resolve, reject) => {
        ws.once("message", (data) => resolve(String(data)));
        ws.once("close", (code) => reject(new Error(`closed with ${code}`)));
      });
      expect(first).toBe("hello from n1");
      ws.close(1000);

      const spans = await traceOf(client.traceId, 2);
      const forward = only(spans, "actor.forward");
      expect(forward).toMatchObject({ node: "n2", kind: CLIENT, parentSpanId: client.spanId });
      expect(forward.attributes).toMatchObject({ "actor.name": "traced", "http.response.status_code": 101 });
      const socket = only(spans, "actor.websocket");
      expect(socket).toMatchObject({ node: "n1", parentSpanId: forward.spanId });
      expect(socket.attributes).toMatchObject({ "websocket.close_code": 1000 });
      expect((await scrape(n2)).value("express_actors_cluster_relayed_websockets_total", { actor: "traced", outcome: "opened" })).toBe(1);
    });

    test("every node's log lines name it; none carries the cluster secret, a signed header or auth data", async () => {
      for (const node of nodes) {
        const { text, records } = await logsOf(node);
        for (const record of records) expect(record.node).toBe(node.url);
        expect(records).toContainEqual(expect.objectContaining({ msg: "joined the cluster", nodeId: expect.stringMatching(/^[0-9a-f-]{36}$/) }));
        expectClean(text);
      }
      // The owner's handler lines for forwarded requests: c.log's fields, the actor's, and the node.
      const { records } = await logsOf(nodes[0]);
      expect(records).toContainEqual(expect.objectContaining({ msg: "handled", actor: "traced", actorId: expect.any(String), path: "/inc", node: nodes[0].url }));
    });

    test("metrics after a scripted sequence: forwards by outcome, hop durations, acquisitions, takeovers and losses", async () => {
      const [n1, n2, n3] = nodes;
      const key = "m";
      // n1 takes the lease of counter "m"; n2 and n3 forward to it.
      const { actorId } = await ok(n1, "counter", key, "/");
      for (let i = 0; i < 3; i++) await ok(n2, "counter", key, "/inc");
      expect((await call(n2, "counter", key, "/user-error")).status).toBe(400);
      for (let i = 0; i < 2; i++) await ok(n3, "counter", key, "/inc");
      // relay "m" starts on n3 and reaches the counter on n1 through the server-side client.
      expect(await ok(n3, "relay", key, "/")).toMatchObject({ relayedBy: "n3", body: { count: 6, node: "n1" } });

      let m = await scrape(n1);
      expect(m.value("express_actors_cluster_lease_acquisitions_total", { actor: "counter" })).toBe(1);
      expect(m.value("express_actors_cluster_takeovers_total", { actor: "counter" })).toBeUndefined();
      expect(m.value("express_actors_cluster_forwarded_requests_total", { actor: "counter" })).toBeUndefined();
      expect(m.value("express_actors_fetch_duration_seconds_count", { actor: "counter", status_class: "2xx" })).toBe(7);
      expect(m.value("express_actors_fetch_duration_seconds_count", { actor: "counter", status_class: "4xx" })).toBe(1);
      m = await scrape(n2);
      expect(m.value("express_actors_cluster_forwarded_requests_total", { actor: "counter", outcome: "2xx" })).toBe(3);
      expect(m.value("express_actors_cluster_forwarded_requests_total", { actor: "counter", outcome: "4xx" })).toBe(1);
      expect(m.value("express_actors_cluster_forward_duration_seconds_count", { actor: "counter" })).toBe(4);
      expect(m.value("express_actors_cluster_forward_duration_seconds_bucket", { actor: "counter", le: "+Inf" })).toBe(4);
      expect(m.value("express_actors_cluster_lease_acquisitions_total", { actor: "counter" })).toBeUndefined();
      // An edge runs no onFetch for a request it forwards.
      expect(m.value("express_actors_fetch_duration_seconds_count", { actor: "counter", status_class: "2xx" })).toBeUndefined();

      // A clean shutdown releases the lease: n2 takes it next, and that is no takeover.
      expect((await fetch(`${origin(n1)}/shutdown`, { method: "POST" })).status).toBe(200);
      await n1.exited();
      // n2 remembered n1 as the owner: a request it sends before it has seen n1's connection close
      // gets one 503 owner_unreachable (docs/clusters.md), and the next is placed afresh.
      let first = await call(n2, "counter", key, "/inc");
      if (first.status === 503) {
        expect(await first.json()).toMatchObject({ code: "owner_unreachable" });
        first = await call(n2, "counter", key, "/inc");
      }
      expect(first.status).toBe(200);
      expect(await first.json()).toMatchObject({ count: 7, node: "n2" });
      m = await scrape(n2);
      expect(m.value("express_actors_cluster_lease_acquisitions_total", { actor: "counter" })).toBe(1);
      expect(m.value("express_actors_cluster_takeovers_total", { actor: "counter" })).toBeUndefined();

      // A kill leaves the lease to expire: a request in the meantime finds the owner unreachable,
      // and the claim after it is a takeover.
      await n2.kill();
      const refused = await call(n3, "counter", key, "/inc");
      expect(refused.status).toBe(503);
      expect(await refused.json()).toMatchObject({ code: "owner_unreachable" });
      const lease = `${prefix}lease:${actorId}`;
      await eventually(async () => ((await redis.exists(lease)) === 0 ? true : undefined), LEASE_MS + 5000, "the killed owner's lease to expire");
      expect(await ok(n3, "counter", key, "/inc")).toMatchObject({ count: 8, node: "n3" });

      // The lease disappears from Redis under n3 (a Redis failover that lost it): lost, "expired".
      await redis.del(lease);
      const lossOnN3 = (cause: string) =>
        eventually(async () => ((await scrape(n3)).value("express_actors_cluster_lease_losses_total", { actor: "counter", cause }) === 1 ? true : undefined), 5000, `the ${cause} loss`);
      await lossOnN3("expired");

      // n3 takes it again, then freezes past its lease: on waking it finds the lease lapsed.
      expect(await ok(n3, "counter", key, "/inc")).toMatchObject({ count: 9, node: "n3" });
      n3.signal("SIGSTOP");
      await delay(LEASE_MS + 500);
      n3.signal("SIGCONT");
      await lossOnN3("lapsed");

      m = await scrape(n3);
      const v = m.value;
      expect(v("express_actors_cluster_forwarded_requests_total", { actor: "counter", outcome: "2xx" })).toBe(3);
      expect(v("express_actors_cluster_forwarded_requests_total", { actor: "counter", outcome: "unreachable" })).toBe(1);
      expect(v("express_actors_cluster_forward_duration_seconds_count", { actor: "counter" })).toBe(3);
      expect(v("express_actors_cluster_lease_acquisitions_total", { actor: "counter" })).toBe(2);
      expect(v("express_actors_cluster_lease_acquisitions_total", { actor: "relay" })).toBe(1);
      expect(v("express_actors_cluster_takeovers_total", { actor: "counter" })).toBe(1);
      expect(v("express_actors_cluster_takeovers_total", { actor: "relay" })).toBeUndefined();
      expect(v("express_actors_cluster_lease_losses_total", { actor: "counter", cause: "expired" })).toBe(1);
      expect(v("express_actors_cluster_lease_losses_total", { actor: "counter", cause: "lapsed" })).toBe(1);
      expect(v("express_actors_cluster_lease_losses_total", { actor: "relay", cause: "lapsed" })).toBe(1);
      // A lost lease stops the actor here: it is no longer live, and that stop is not a sleep.
      expect(v("express_actors_activations_total", { actor: "counter" })).toBe(2);
      expect(v("express_actors_live_actors", { actor: "counter" })).toBe(0);
      expect(v("express_actors_live_actors", { actor: "relay" })).toBe(0);
      expect(v("express_actors_sleeps_total", { actor: "counter" })).toBeUndefined();

      // Bounded labels: no key and no actor id in any sample.
      const labels = parseMetrics(m.text).flatMap((s) => Object.values(s.labels));
      expect(labels).not.toContain(key);
      expect(labels.some((l) => /^[0-9a-f-]{36}$/.test(l))).toBe(false);

      // n3's log tells the failed hop and the lost leases, each line with its node, nothing secret.
      const { text, records } = await logsOf(n3);
      for (const record of records) expect(record.node).toBe(n3.url);
      expect(records).toContainEqual(expect.objectContaining({ level: 40, msg: `forwarding to ${n2.url} failed`, err: expect.anything() }));
      for (const cause of ["expired", "lapsed"]) {
        expect(records).toContainEqual(expect.objectContaining({ level: 40, msg: expect.stringMatching(/lease on the actor is gone/), actor: "counter", actorId, cause }));
      }
      expectClean(text);
    });
  });
});
