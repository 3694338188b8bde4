import { Pool } from "pg";
import WebSocket from "ws";
import { ClusterNode, delay, startNodes, type NodeEnv } from "./helpers/cluster-harness";
import { REDIS_URL, deletePrefix, describeWithService, tempDatabase, uniqueName } from "./helpers/services";

jest.setTimeout(180_000);

const HTTP_KEYS = ["http-a", "http-b", "http-c", "http-d"];
const SOCKET_KEYS = ["chat-a", "chat-b", "chat-c"];
const WRITERS = 6;
const SOCKETS = 6;

const query = (key: string) => JSON.stringify({ getOrCreateForKey: { name: "counter", key: [key] } });
const pick = <T>(items: T[]): T => items[Math.floor(Math.random() * items.length)];

/** What the load saw: the counts each key acknowledged, and anything a client should never see. */
class Observed {
  readonly acked = new Map<string, number[]>();
  readonly unexpected: string[] = [];

  ack(key: string, count: number) {
    const counts = this.acked.get(key) ?? [];
    counts.push(count);
    this.acked.set(key, counts);
  }
}

describeWithService("postgres", "a rolling restart under load", () => {
  describeWithService("redis", "three nodes, each restarted in turn with SIGTERM", () => {
    let db: Awaited<ReturnType<typeof tempDatabase>>;
    let nodes: ClusterNode[] = [];
    const prefix = uniqueName("ea_rolling") + ":";

    beforeAll(async () => {
      db = await tempDatabase();
      const pool = new Pool({ connectionString: db.url, max: 1 });
      await pool.query("CREATE TABLE activation_log (id uuid PRIMARY KEY, actor text, node text, pid int, started timestamptz, last_served timestamptz)");
      await pool.end();
    });
    afterAll(async () => {
      await Promise.all(nodes.map((node) => node.kill()));
      await db?.drop();
      await deletePrefix(prefix);
    });

    test("no acknowledged write is lost, no actor runs on two nodes at once, every socket gets 1012 and reconnects", async () => {
      const env: NodeEnv = { REDIS_URL, PREFIX: prefix, PG_URL: db.url, LEASE_MS: "3000", ACTIVATION_LOG: "1" };
      nodes = await startNodes(3, env);
      const restarting = new Set<ClusterNode>();
      const live = () => nodes.filter((node) => !restarting.has(node));
      const seen = new Observed();
      let running = true;

      // HTTP writers: each POST goes to any live node; only a 200 counts as acknowledged.
      const writer = async (i: number) => {
        while (running) {
          const key = HTTP_KEYS[i % HTTP_KEYS.length];
          const node = pick(live());
          try {
            const res = await node.fetch(key, "/inc", { method: "POST", signal: AbortSignal.timeout(10_000) });
            const body = await res.json();
            if (res.status === 200) seen.ack(key, body.count);
            else if (res.status !== 503) seen.unexpected.push(`${node.name} answered ${res.status} ${JSON.stringify(body)}`);
          } catch {
            // The node went away under the request: not acknowledged, tried again elsewhere.
            await delay(20);
          }
        }
      };

      // Chat-like sockets: each increments its room's counter and waits for the acknowledgment.
      const closes: Array<{ socket: number; code: number; reason: string }> = [];
      const acksAfterClose = new Map<number, number>();
      const chatter = async (i: number) => {
        const key = SOCKET_KEYS[i % SOCKET_KEYS.length];
        while (running) {
          const node = pick(live());
          const ws = new WebSocket(`ws://127.0.0.1:${node.port}/registry/actors/raw/websocket/`, {
            headers: { "x-rivetkit-actor-query": query(key) },
          });
          ws.on("error", () => {});
          const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: String(reason) })));
          const opened = await new Promise<boolean>((resolve) => {
            ws.once("message", () => resolve(true));
            void closed.then(() => resolve(false));
          });
          if (opened) {
            let open = true;
            void closed.then(() => (open = false));
            while (running && open) {
              const reply = new Promise<any>((resolve) => {
                ws.once("message", (data) => resolve(JSON.parse(String(data))));
                void closed.then(() => resolve(undefined));
              });
              ws.send("cmd:inc");
              const body = await reply;
              if (body) {
                seen.ack(key, body.count);
                if (acksAfterClose.has(i)) acksAfterClose.set(i, acksAfterClose.get(i)! + 1);
              }
              await delay(30);
            }
            if (!running) {
              ws.close(1000);
              return;
            }
          }
          const close = await closed;
          // A connection refused by a node that is down is no close of an open socket.
          if (opened) {
            closes.push({ socket: i, ...close });
            if (!acksAfterClose.has(i)) acksAfterClose.set(i, 0);
          } else if (close.code !== 1006 && close.code !== 1012) {
            seen.unexpected.push(`socket ${i} refused with ${close.code} ${close.reason}`);
          }
          await delay(100);
        }
      };

      const load = [...Array.from({ length: WRITERS }, (_, i) => writer(i)), ...Array.from({ length: SOCKETS }, (_, i) => chatter(i))];
      await delay(3000);
      for (let i = 0; i < nodes.length; i++) {
        const old = nodes[i];
        restarting.add(old);
        old.signal("SIGTERM");
        await old.exited();
        nodes[i] = await ClusterNode.start(old.name, env, old.port);
        restarting.delete(old);
        await delay(3000);
      }
      running = false;
      await Promise.all(load);

      expect(seen.unexpected).toEqual([]);

      // Every acknowledged write is in the store, and no two acknowledgments of a key share a count
      // (two owners would each count from the same saved state).
      const pool = new Pool({ connectionString: db.url, max: 1 });
      try {
        for (const key of [...HTTP_KEYS, ...SOCKET_KEYS]) {
          const counts = seen.acked.get(key) ?? [];
          expect(counts.length).toBeGreaterThan(10);
          expect(new Set(counts).size).toBe(counts.length);
          const { rows } = await pool.query("SELECT state FROM express_actors WHERE meta::json->'key'->>0 = $1", [key]);
          expect(JSON.parse(rows[0].state).count).toBeGreaterThanOrEqual(Math.max(...counts));
        }

        // Activations of one actor follow each other: each ended (its last acknowledged write) before the next began.
        const { rows } = await pool.query("SELECT actor, node, pid, started, coalesce(last_served, started) AS last FROM activation_log ORDER BY actor, started");
        const overlaps: string[] = [];
        for (let i = 1; i < rows.length; i++) {
          const [before, after] = [rows[i - 1], rows[i]];
          if (before.actor === after.actor && before.last >= after.started) {
            overlaps.push(`${before.actor}: ${before.node}/${before.pid} served until ${before.last.toISOString()}, ${after.node}/${after.pid} began ${after.started.toISOString()}`);
          }
        }
        expect(overlaps).toEqual([]);
        // Each restart moved actors: more activations than actors.
        expect(rows.length).toBeGreaterThan(HTTP_KEYS.length + SOCKET_KEYS.length);
      } finally {
        await pool.end();
      }

      // Every socket was on (or relayed through) a node that restarted: it got 1012 and came back.
      expect(closes.filter((close) => close.code !== 1012)).toEqual([]);
      for (let i = 0; i < SOCKETS; i++) {
        expect(closes.some((close) => close.socket === i)).toBe(true);
        expect(acksAfterClose.get(i)).toBeGreaterThan(0);
      }
    });
  });
});
