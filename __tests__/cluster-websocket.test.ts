import { randomBytes } from "node:crypto";
import WebSocket from "ws";
import { signForward } from "../lib/cluster/signing";
import { ClusterNode, SECRET, delay, eventually, startNodes, type NodeEnv } from "./helpers/cluster-harness";
import { REDIS_URL, deletePrefix, describeWithService, tempDatabase, uniqueName } from "./helpers/services";

jest.setTimeout(90_000);

const MB = 1024 * 1024;

interface Received {
  data: Buffer;
  binary: boolean;
}

/** A client socket with every message and its close kept, to be awaited in order. */
class Client {
  readonly ws: WebSocket;
  private readonly received: Received[] = [];
  private waiting?: () => void;
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(url: string, protocols: string[], headers: Record<string, string>) {
    this.ws = new WebSocket(url, protocols, { headers });
    this.ws.on("message", (data: Buffer, binary: boolean) => {
      this.received.push({ data, binary });
      this.waiting?.();
    });
    this.ws.on("error", () => {});
    this.closed = new Promise((resolve) => this.ws.once("close", (code, reason) => resolve({ code, reason: String(reason) })));
    void this.closed.then(() => this.waiting?.());
  }

  async next(ms = 15_000): Promise<Received> {
    const deadline = Date.now() + ms;
    while (this.received.length === 0) {
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error("closed before the next message");
      if (Date.now() > deadline) throw new Error("no message in time");
      await new Promise<void>((resolve) => {
        this.waiting = resolve;
        setTimeout(resolve, 100);
      });
    }
    return this.received.shift()!;
  }

  async text(): Promise<string> {
    const { data, binary } = await this.next();
    expect(binary).toBe(false);
    return data.toString("utf8");
  }

  async json(): Promise<any> {
    return JSON.parse(await this.text());
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.ws.once("open", () => resolve());
      this.ws.once("close", (code) => reject(new Error(`closed with ${code} before opening`)));
    });
  }
}

const query = (key: string) => JSON.stringify({ getOrCreateForKey: { name: "counter", key: [key] } });

/** A socket to the counter of `key` through `node`'s router. */
function connect(node: ClusterNode, key: string, options: { protocols?: string[]; headers?: Record<string, string>; path?: string } = {}) {
  const path = options.path ?? "/room?x=1";
  return new Client(`ws://127.0.0.1:${node.port}/registry/actors/raw/websocket${path}`, options.protocols ?? [], {
    "x-rivetkit-actor-query": query(key),
    ...options.headers,
  });
}

/** What the shared store holds for the counter of `key`, read through `node` (wherever it lives). */
const state = (node: ClusterNode, key: string) => node.json(key, "/");

/**
 * Bytes held in ArrayBuffers (every Buffer) by `node`'s process after a full GC: the least of three
 * samples, since a busy machine can catch a chunk or two on its way through.
 */
async function heldBytes(node: ClusterNode): Promise<number> {
  let least = Infinity;
  for (let i = 0; i < 3; i++) {
    if (i > 0) await delay(150);
    const usage = await (await fetch(`http://127.0.0.1:${node.port}/debug/memory`)).json();
    least = Math.min(least, usage.arrayBuffers);
  }
  return least;
}

describeWithService("postgres", "WebSockets across a cluster of three processes", () => {
  describeWithService("redis", "over one Redis", () => {
    let db: Awaited<ReturnType<typeof tempDatabase>>;
    const prefixes: string[] = [];

    beforeAll(async () => {
      db = await tempDatabase();
    });
    afterAll(async () => {
      await db?.drop();
      for (const prefix of prefixes) await deletePrefix(prefix);
    });

    async function cluster(env: Partial<NodeEnv> = {}) {
      const prefix = uniqueName("ea_ws") + ":";
      prefixes.push(prefix);
      return startNodes(3, { REDIS_URL, PREFIX: prefix, PG_URL: db.url, LEASE_MS: "10000", ...env });
    }

    /** The node that owns `key`'s actor (the first to serve it), and the others. */
    async function roles(nodes: ClusterNode[], key: string) {
      const { node } = await nodes[0].json(key, "/");
      const owner = nodes.find((n) => n.name === node)!;
      return { owner, edges: nodes.filter((n) => n !== owner) };
    }

    describe.each([
      ["express-ws on its own ws 7 (as users install it)", undefined],
      ["ws 8 everywhere", "8"],
    ])("%s", (_title, pin) => {
      let nodes: ClusterNode[];
      /** The variants share one store: each uses keys of its own. */
      const named = (key: string) => `${pin ?? "7"}-${key}`;

      beforeAll(async () => {
        nodes = await cluster({ PIN_WS: pin });
      });
      afterAll(async () => {
        await Promise.all((nodes ?? []).map((node) => node.kill()));
      });

      test("a socket opened on any node reaches the owner: text, binary and fragmented messages, in order, both ways", async () => {
        const key = named("relay-basics");
        const { owner, edges } = await roles(nodes, key);
        for (const edge of edges) {
          const client = connect(edge, key);
          expect(await client.text()).toBe(`hello from ${owner.name}`);
          const bytes = randomBytes(200_000);
          client.ws.send("first");
          client.ws.send(bytes);
          client.ws.send(Buffer.alloc(0));
          client.ws.send("é✓ 😀");
          // One message in three frames: it reaches the actor whole.
          client.ws.send("frag", { fin: false });
          client.ws.send("ment", { fin: false });
          client.ws.send("ed", { fin: true });
          expect(await client.text()).toBe("first");
          const back = await client.next();
          expect(back.binary).toBe(true);
          expect(back.data.equals(bytes)).toBe(true);
          expect(await client.next()).toEqual({ data: Buffer.alloc(0), binary: true });
          expect(await client.text()).toBe("é✓ 😀");
          expect(await client.text()).toBe("fragmented");
          client.ws.close(1000, "done");
          expect(await client.closed).toEqual({ code: 1000, reason: "done" });
        }
      });

      test("the actor sees the socket as a local client would: url, headers, protocol, and onAuth's result from the edge", async () => {
        const key = named("relay-view");
        const { owner, edges } = await roles(nodes, key);
        const look = async (node: ClusterNode) => {
          const client = connect(node, key, {
            protocols: ["chat.v2", "chat.v1"],
            headers: { "x-user": "ada", origin: `http://127.0.0.1:${node.port}`, "x-rivetkit-cluster-forward": "forged" },
          });
          await client.text();
          client.ws.send("cmd:info");
          const info = await client.json();
          expect(client.ws.protocol).toBe("chat.v2");
          client.ws.close();
          return info;
        };
        const direct = await look(owner);
        const relayed = await look(edges[0]);
        const port = edges[0].port;
        expect(relayed).toEqual({
          node: owner.name,
          auth: { user: "ada", checkedBy: edges[0].name, source: "router" },
          url: `http://127.0.0.1:${port}/room?x=1`,
          socketUrl: `ws://127.0.0.1:${port}/room?x=1`,
          protocol: "chat.v2",
          headers: [
            ["host", `127.0.0.1:${port}`],
            ["origin", `http://127.0.0.1:${port}`],
            ["x-user", "ada"],
          ],
          offered: "chat.v2, chat.v1",
        });
        // The same as a client of the owner itself sees, but for the edge's address and onAuth's node.
        const ownPort = String(owner.port);
        expect(JSON.stringify(relayed).replaceAll(String(port), ownPort).replaceAll(edges[0].name, owner.name)).toBe(JSON.stringify(direct));
      });

      test("close codes and reasons pass end to end, both ways, and a close listener's state change is saved", async () => {
        const key = named("relay-close");
        const { owner, edges } = await roles(nodes, key);
        const byActor = connect(edges[0], key);
        await byActor.text();
        byActor.ws.send("cmd:close:4321:bye from the actor");
        expect(await byActor.closed).toEqual({ code: 4321, reason: "bye from the actor" });

        const byClient = connect(edges[1], key);
        await byClient.text();
        byClient.ws.close(4000, "bye from the client");
        expect(await byClient.closed).toEqual({ code: 4000, reason: "bye from the client" });
        const seen = await eventually(async () => {
          const { lastClose } = await state(owner, key);
          return lastClose?.code === 4000 ? lastClose : undefined;
        });
        expect(seen).toEqual({ code: 4000, reason: "bye from the client", node: owner.name });
      });

      test("a ping is answered with its payload", async () => {
        const client = connect(nodes[1], named("relay-ping"));
        await client.text();
        const pong = new Promise<Buffer>((resolve) => client.ws.once("pong", resolve));
        client.ws.ping("are you there");
        expect(String(await pong)).toBe("are you there");
        client.ws.close();
      });

      test("refusals close with SPEC §5's codes, whether the edge (onAuth) or the owner (onWebSocket) refuses", async () => {
        const key = named("relay-refusals");
        const { owner, edges } = await roles(nodes, key);
        const closes = async (node: ClusterNode, headers: Record<string, string>) => connect(node, key, { headers }).closed;
        // onAuth throws a plain Error: 1011 internal_error, at the edge exactly as at the owner.
        expect(await closes(owner, { "x-deny": "1" })).toEqual({ code: 1011, reason: "internal_error" });
        expect(await closes(edges[0], { "x-deny": "1" })).toEqual({ code: 1011, reason: "internal_error" });
        expect(await closes(owner, { "x-refuse": "1" })).toEqual({ code: 4400, reason: "refused" });
        expect(await closes(edges[0], { "x-refuse": "1" })).toEqual({ code: 4400, reason: "refused" });
      });

      test("state changed from a relayed socket's listeners is the actor's state, on every node", async () => {
        const key = named("relay-state");
        const { owner, edges } = await roles(nodes, key);
        const clients = [connect(owner, key), connect(edges[0], key), connect(edges[1], key)];
        for (const client of clients) await client.text();
        for (let round = 1; round <= 3; round++) {
          for (const [i, client] of clients.entries()) {
            client.ws.send("cmd:inc");
            expect(await client.json()).toEqual({ count: (round - 1) * 3 + i + 1, node: owner.name });
          }
        }
        for (const client of clients) client.ws.close();
        expect(await state(edges[1], key)).toMatchObject({ count: 9, activations: [owner.name] });
      });

      test("a slow client holds the owner back instead of filling the edge's memory", async () => {
        const key = named("relay-slow-client");
        const { owner, edges } = await roles(nodes, key);
        const edge = edges[0];
        const client = connect(edge, key);
        await client.text();
        const baseline = await heldBytes(edge);
        client.ws.pause();
        const count = 1000;
        const size = 64 * 1024;
        client.ws.send(`cmd:flood:${count}:${size}`);
        await delay(2000);
        const { bufferedAmount } = await owner.json(key, "/buffered");
        const held = (await heldBytes(edge)) - baseline;
        // 64 MB sent: most of it waits on the owner, a little in the sockets' kernel buffers and at the edge.
        expect(bufferedAmount).toBeGreaterThan(16 * MB);
        expect(held).toBeLessThan(8 * MB);
        client.ws.resume();
        for (let i = 0; i < count; i++) {
          const { data, binary } = await client.next();
          expect([binary, data.length, data[0], data[size - 1]]).toEqual([true, size, i % 256, i % 256]);
        }
        expect(await client.json()).toMatchObject({ flooded: count });
        client.ws.close();
      });

      test("a slow owner holds the client back instead of filling the edge's memory", async () => {
        const key = named("relay-slow-owner");
        const { edges } = await roles(nodes, key);
        const edge = edges[0];
        const client = connect(edge, key);
        await client.text();
        const baseline = await heldBytes(edge);
        client.ws.send("cmd:block:3000");
        const count = 1000;
        const chunk = Buffer.alloc(64 * 1024);
        for (let i = 0; i < count; i++) client.ws.send(chunk.fill(i % 256));
        await delay(1500);
        const held = (await heldBytes(edge)) - baseline;
        expect(client.ws.bufferedAmount).toBeGreaterThan(16 * MB);
        expect(held).toBeLessThan(8 * MB);
        expect(await client.text()).toBe("unblocked");
        for (let i = 0; i < count; i++) {
          const { data } = await client.next();
          expect([data.length, data[0]]).toEqual([chunk.length, i % 256]);
        }
        client.ws.close();
      });

      test("the RivetKit gateway's sockets are relayed too", async () => {
        const key = named("relay-gateway");
        const { owner, edges } = await roles(nodes, key);
        const res = await fetch(`${edges[0].url}/actors`, {
          method: "PUT",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ name: "counter", key }),
        });
        const id = (await res.json()).actor.actor_id;
        const client = new Client(`ws://127.0.0.1:${edges[0].port}/registry/gateway/${id}/websocket/`, ["rivet", "rivet_encoding.json"], {});
        expect(await client.text()).toBe(`hello from ${owner.name}`);
        expect(client.ws.protocol).toBe("rivet");
        client.ws.send("over the gateway");
        expect(await client.text()).toBe("over the gateway");
        client.ws.close();
      });

      test("c.client()'s socket on one node reaches an actor owned by another", async () => {
        const key = named("relay-server-client");
        const { owner, edges } = await roles(nodes, key);
        const res = await fetch(`${edges[0].url}/actors/raw/http/socket`, {
          headers: { "x-rivetkit-actor-query": JSON.stringify({ getOrCreateForKey: { name: "relay", key: [key] } }) },
        });
        expect(res.status).toBe(200);
        expect(await res.json()).toEqual({ relayedBy: edges[0].name, messages: [`hello from ${owner.name}`, "echo through"] });
      });

      test("the socket route refuses a missing, forged or HTTP-only signature with 4403, and HTTP refuses a socket's", async () => {
        const key = named("relay-signatures");
        const { owner } = await roles(nodes, key);
        const { actorId } = await (
          await fetch(`${owner.url}/actors/resolve`, { method: "POST", headers: { "x-rivetkit-actor-query": query(key) } })
        ).json();
        const claims = { actorId, name: "counter", auth: null, origin: "http://x", method: "GET", path: "/" };
        const route = `ws://127.0.0.1:${owner.port}/registry/actors/cluster/websocket`;
        const attempt = async (header?: string) => {
          const client = new Client(route, [], header ? { "x-rivetkit-cluster-forward": header } : {});
          return client.closed;
        };
        expect(await attempt()).toEqual({ code: 4403, reason: "forbidden" });
        expect(await attempt(signForward("another-secret-0123456789", { ...claims, socket: true }))).toEqual({ code: 4403, reason: "forbidden" });
        expect(await attempt(signForward(SECRET, claims))).toEqual({ code: 4403, reason: "forbidden" });
        expect(await attempt(signForward(SECRET, { ...claims, socket: true }, Date.now() - 60_000))).toEqual({ code: 4403, reason: "forbidden" });
        const valid = new Client(route, [], { "x-rivetkit-cluster-forward": signForward(SECRET, { ...claims, socket: true }) });
        expect(await valid.text()).toBe(`hello from ${owner.name}`);
        valid.ws.close();
        const http = await fetch(`${owner.url}/actors/cluster/http/`, {
          headers: { "x-rivetkit-cluster-forward": signForward(SECRET, { ...claims, socket: true }) },
        });
        expect(http.status).toBe(403);
      });
    });

    describe("drain and failures", () => {
      let nodes: ClusterNode[] = [];
      afterEach(async () => {
        await Promise.all(nodes.map((node) => node.kill()));
        nodes = [];
      });

      /** Opens a socket to `key` through `node`, retrying while the cluster hands the actor over. */
      async function reconnect(node: ClusterNode, key: string, ms = 20_000): Promise<{ client: Client; hello: string }> {
        return eventually(async () => {
          const client = connect(node, key);
          try {
            return { client, hello: await client.text() };
          } catch {
            const { code } = await client.closed;
            expect(code).toBe(1012);
            return undefined;
          }
        }, ms, `a socket to ${key} through ${node.name}`);
      }

      test("shutdown of the owner: its relayed and direct sockets close with 1012, and reconnect to a new owner with the state", async () => {
        nodes = await cluster();
        const key = "drain-owner";
        const { owner, edges } = await roles(nodes, key);
        const relayed = connect(edges[0], key);
        const direct = connect(owner, key);
        await relayed.text();
        await direct.text();
        relayed.ws.send("cmd:inc");
        expect(await relayed.json()).toMatchObject({ count: 1 });
        direct.ws.send("cmd:inc");
        expect(await direct.json()).toMatchObject({ count: 2 });

        await fetch(`http://127.0.0.1:${owner.port}/shutdown`, { method: "POST" });
        expect(await relayed.closed).toEqual({ code: 1012, reason: "service_restart" });
        expect(await direct.closed).toEqual({ code: 1012, reason: "service_restart" });
        await owner.exited();

        // The lease was released: the next socket is served by a new owner at once (well within the
        // 10 s lease), with both increments.
        const { client, hello } = await reconnect(edges[0], key, 3000);
        expect(hello).toMatch(new RegExp(`^hello from (${edges.map((e) => e.name).join("|")})$`));
        client.ws.send("cmd:inc");
        expect(await client.json()).toMatchObject({ count: 3 });
        client.ws.close();
      });

      test("shutdown of an edge: its clients get 1012 and the owner sees the relay go away", async () => {
        nodes = await cluster();
        const key = "drain-edge";
        const { owner, edges } = await roles(nodes, key);
        const client = connect(edges[0], key);
        await client.text();
        await fetch(`http://127.0.0.1:${edges[0].port}/shutdown`, { method: "POST" });
        expect(await client.closed).toEqual({ code: 1012, reason: "service_restart" });
        const seen = await eventually(async () => {
          const { lastClose } = await state(owner, key);
          return lastClose ?? undefined;
        });
        expect(seen).toEqual({ code: 1001, reason: "going_away", node: owner.name });
      });

      test("owner killed: relayed sockets close with 1012 and reconnect, after the lease, to a new owner with every acknowledged write", async () => {
        nodes = await cluster({ LEASE_MS: "1500" });
        const key = "killed-owner";
        const { owner, edges } = await roles(nodes, key);
        const client = connect(edges[0], key);
        await client.text();
        for (let i = 1; i <= 3; i++) {
          client.ws.send("cmd:inc");
          expect(await client.json()).toMatchObject({ count: i });
        }
        await owner.kill();
        expect(await client.closed).toEqual({ code: 1012, reason: "owner_unreachable" });
        const { client: again, hello } = await reconnect(edges[1], key);
        expect(hello).not.toBe(`hello from ${owner.name}`);
        again.ws.send("cmd:inc");
        expect(await again.json()).toMatchObject({ count: 4 });
        again.ws.close();
      });
    });
  });
});
