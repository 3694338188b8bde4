import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { signForward } from "../lib/cluster/signing";
import { ClusterNode, SECRET, startNodes } from "./helpers/cluster-harness";
import { REDIS_URL, deletePrefix, describeWithService, tempDatabase, uniqueName } from "./helpers/services";

jest.setTimeout(60_000);

describeWithService("postgres", "a cluster of three processes", () => {
  describeWithService("redis", "over one Redis", () => {
    let db: Awaited<ReturnType<typeof tempDatabase>>;
    let nodes: ClusterNode[];
    const prefix = uniqueName("ea_cluster") + ":";
    const eventDir = mkdtempSync(path.join(tmpdir(), "ea-cluster-"));
    const eventLog = path.join(eventDir, "events");

    beforeAll(async () => {
      db = await tempDatabase();
      nodes = await startNodes(3, { REDIS_URL, PREFIX: prefix, PG_URL: db.url, EVENT_LOG: eventLog });
    });
    afterAll(async () => {
      await Promise.all((nodes ?? []).map((node) => node.kill()));
      await db?.drop();
      await deletePrefix(prefix);
      rmSync(eventDir, { recursive: true, force: true });
    });

    /** The node that owns `key`'s actor (its first activation), and the others. */
    async function roles(key: string) {
      const { node } = await nodes[0].json(key, "/");
      const owner = nodes.find((n) => n.name === node)!;
      return { owner, others: nodes.filter((n) => n !== owner) };
    }

    test("a counter incremented through alternating nodes counts exactly, and only one node ever ran it", async () => {
      const key = "alternating";
      for (let i = 0; i < 30; i++) {
        const body = await nodes[i % 3].json(key, "/inc", { method: "POST" });
        expect(body.count).toBe(i + 1);
      }
      const final = await nodes[1].json(key, "/");
      expect(final.count).toBe(30);
      expect(final.activations).toHaveLength(1);
    });

    test("concurrent first requests on all three nodes make one activation", async () => {
      const key = "concurrent";
      const bodies = await Promise.all(nodes.flatMap((node) => [1, 2].map(() => node.json(key, "/inc", { method: "POST" }))));
      expect(bodies.map((b) => b.count).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(new Set(bodies.map((b) => b.node)).size).toBe(1);
      expect((await nodes[2].json(key, "/")).activations).toHaveLength(1);
    });

    test("concurrent first requests on all three nodes: one createState, one onStart, one owner, in all processes together", async () => {
      const key = "created-once";
      const bodies = await Promise.all(
        nodes.flatMap((node) =>
          [1, 2, 3].map(async () => {
            const res = await node.fetchActor("once", key, "/");
            expect(res.status).toBe(200);
            return res.json();
          }),
        ),
      );
      const owner = bodies[0].node;
      expect(bodies).toEqual(bodies.map(() => ({ node: owner, createdOn: owner })));
      // The processes' own record, which a run fenced off later would still be in.
      const events = readFileSync(eventLog, "utf8").split("\n").filter((line) => line.endsWith(` ${key}`));
      expect(events.sort()).toEqual([`${owner} createState ${key}`, `${owner} onStart ${key}`]);
    });

    test("the actor sees the request as the client sent it to the edge; onAuth ran once, at the edge", async () => {
      const key = "request-view";
      const { others } = await roles(key);
      const edge = others[0];
      const res = await edge.fetch(key, "/request?x=1&y=%20z", {
        method: "POST",
        headers: { "x-user": "ada", "x-custom": "kept", "x-rivetkit-cluster-forward": "forged", "content-type": "text/plain" },
        body: "hello",
      });
      expect(res.status).toBe(200);
      const seen = await res.json();
      expect(seen.node).not.toBe(edge.name);
      expect(seen.url).toBe(`http://127.0.0.1:${edge.port}/request?x=1&y=%20z`);
      expect(seen.method).toBe("POST");
      expect(seen.body).toBe("hello");
      expect(seen.auth).toEqual({ user: "ada", checkedBy: edge.name, source: "router" });
      expect(seen.headers).toEqual([
        ["host", `127.0.0.1:${edge.port}`],
        ["x-custom", "kept"],
        ["x-user", "ada"],
      ]);
    });

    test("a route after express.json() forwards the parsed body", async () => {
      const key = "parsed-body";
      const { others } = await roles(key);
      const res = await fetch(`http://127.0.0.1:${others[0].port}/counters/${key}/request?q=1`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ hello: "wörld" }),
      });
      expect(res.status).toBe(200);
      const seen = await res.json();
      expect(seen.node).not.toBe(others[0].name);
      expect(JSON.parse(seen.body)).toEqual({ hello: "wörld" });
      expect(seen.url).toBe(`http://127.0.0.1:${others[0].port}/request?q=1`);
    });

    test("a 20 MB upload through a hop arrives intact", async () => {
      const key = "upload";
      const { owner, others } = await roles(key);
      const data = randomBytes(20 * 1024 * 1024);
      const res = await others[1].fetch(key, "/upload", { method: "PUT", body: data });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({
        node: owner.name,
        bytes: data.byteLength,
        sha256: createHash("sha256").update(data).digest("hex"),
      });
    });

    test("SSE through a hop arrives per event, and a client that leaves cancels the owner's stream", async () => {
      const key = "sse";
      const { owner, others } = await roles(key);
      const edge = others[0];
      const res = await edge.fetch(key, "/sse");
      expect(res.headers.get("content-type")).toBe("text/event-stream");
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      // The second event is only produced once the first has arrived: no buffering anywhere.
      expect(decoder.decode((await reader.read()).value)).toBe(`data: first from ${owner.name}\n\n`);
      await others[1].json(key, "/release", { method: "POST" });
      expect(decoder.decode((await reader.read()).value)).toBe("data: second\n\n");
      expect((await reader.read()).done).toBe(true);

      const again = await edge.fetch(key, "/sse");
      const second = again.body!.getReader();
      await second.read();
      await second.cancel();
      let state;
      for (let i = 0; i < 100 && (state = await owner.json(key, "/")).cancelled < 1; i++) await new Promise((r) => setTimeout(r, 50));
      expect(state.cancelled).toBe(1);
    });

    test("c.client() on one node reaches an actor owned by another", async () => {
      const key = "relayed";
      const { owner, others } = await roles(key);
      const relayQuery = JSON.stringify({ getOrCreateForKey: { name: "relay", key: [key] } });
      const res = await fetch(`${others[0].url}/actors/raw/http/`, { headers: { "x-rivetkit-actor-query": relayQuery } });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ relayedBy: others[0].name, status: 200, body: { count: 1, node: owner.name } });
      expect((await owner.json(key, "/")).activations).toEqual([owner.name]);
    });

    describe("the RivetKit gateway (SPEC §10) on a node that does not own the actor", () => {
      /** The actor id as RivetKit's client learns it: PUT {mount}/actors, here on `node`. */
      const idOf = async (node: ClusterNode, key: string) => {
        const res = await fetch(`${node.url}/actors`, {
          method: "PUT",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ name: "counter", key }),
        });
        const body = await res.json();
        expect(body).toMatchObject({ created: false, actor: { name: "counter", key } });
        return body.actor.actor_id as string;
      };

      test("by id: forwarded to the owner, seen as sent to the edge without x-rivet-* headers; onAuth ran once, at the edge", async () => {
        const key = "gateway-id";
        const { owner, others } = await roles(key);
        const edge = others[0];
        const res = await fetch(`${edge.url}/gateway/${await idOf(edge, key)}/request/request?x=1&y=%20z`, {
          method: "POST",
          headers: {
            "x-user": "ada",
            "x-custom": "kept",
            "x-rivet-conn-params": JSON.stringify({ token: "abc" }),
            "x-rivet-token": "t",
            "x-rivetkit-cluster-forward": "forged",
            "content-type": "text/plain",
          },
          body: "hello",
        });
        expect(res.status).toBe(200);
        const seen = await res.json();
        expect(seen.node).toBe(owner.name);
        expect(seen.url).toBe(`http://127.0.0.1:${edge.port}/request?x=1&y=%20z`);
        expect(seen.method).toBe("POST");
        expect(seen.body).toBe("hello");
        expect(seen.auth).toEqual({ user: "ada", checkedBy: edge.name, source: "gateway", params: { token: "abc" } });
        expect(seen.headers).toEqual([
          ["host", `127.0.0.1:${edge.port}`],
          ["x-custom", "kept"],
          ["x-user", "ada"],
        ]);
      });

      test("the query gateway of 2.3.x clients: forwarded to the owner, rvt-* parameters stripped, counts exactly", async () => {
        const key = "gateway-query";
        const { owner, others } = await roles(key);
        for (const [i, edge] of [...others, owner, ...others].entries()) {
          const res = await fetch(`${edge.url}/gateway/counter/request/inc?keep=1&rvt-method=getOrCreate&rvt-key=${key}`, { method: "POST" });
          expect(res.status).toBe(200);
          expect(await res.json()).toMatchObject({ count: i + 1, node: owner.name, activations: [owner.name] });
        }
        const seen = await (await fetch(`${others[1].url}/gateway/counter/request/request?rvt-method=get&rvt-key=${key}&keep=1`)).json();
        expect(seen).toMatchObject({ node: owner.name, url: `http://127.0.0.1:${others[1].port}/request?keep=1` });
      });

      test("an error on the owner comes back through the hop in the gateway's shape", async () => {
        const key = "gateway-error";
        const { owner, others } = await roles(key);
        const res = await fetch(`${others[0].url}/gateway/${await idOf(others[0], key)}/request/user-error`);
        expect(res.status).toBe(400);
        expect(await res.json()).toEqual({ group: "user", code: "refused", message: `refused on ${owner.name}`, metadata: { node: owner.name } });
      });
    });

    describe("the forwarded-request route", () => {
      const route = (node: ClusterNode) => `${node.url}/actors/cluster/http`;
      const claims = (actorId: string) => ({
        actorId,
        name: "counter",
        auth: { user: "mallory" },
        origin: "http://example.test",
        method: "GET",
        path: "/request",
      });

      test("answers a valid signature, and 403 to none, a forged one or an expired one", async () => {
        const key = "signed";
        const { owner } = await roles(key);
        const { actorId } = await (
          await fetch(`${owner.url}/actors/resolve`, {
            method: "POST",
            headers: { "x-rivetkit-actor-query": JSON.stringify({ getForKey: { name: "counter", key: [key] } }) },
          })
        ).json();
        const send = (token?: string) => fetch(route(owner), { headers: token ? { "x-rivetkit-cluster-forward": token } : {} });

        const valid = await send(signForward(SECRET, claims(actorId)));
        expect(valid.status).toBe(200);
        expect(await valid.json()).toMatchObject({ url: "http://example.test/request", auth: { user: "mallory" } });

        for (const token of [
          undefined,
          signForward("another-secret-0123456789", claims(actorId)),
          signForward(SECRET, claims(actorId), Date.now() - 60_000),
          signForward(SECRET, claims(actorId)).replace(/^./, (c) => (c === "e" ? "f" : "e")),
          signForward(SECRET, { ...claims(actorId), via: "elsewhere" as "gateway" }),
        ]) {
          const res = await send(token);
          expect(res.status).toBe(403);
          expect(await res.json()).toMatchObject({ code: "forbidden" });
        }
        // Bound to the method it was signed for.
        const post = await fetch(route(owner), { method: "POST", headers: { "x-rivetkit-cluster-forward": signForward(SECRET, claims(actorId)) } });
        expect(post.status).toBe(403);
      });
    });

    test("GET {mount}/health answers 200 on every node", async () => {
      for (const node of nodes) expect((await fetch(`${node.url}/health`)).status).toBe(200);
    });
  });
});
