import { randomUUID } from "node:crypto";
import { Client, Pool } from "pg";
import request from "supertest";
import { setup, type Registry } from "express-actors";
import { postgresStore } from "express-actors/stores/postgres";
import { startDemo } from "../demo/server";
import { counter } from "./fixtures/counter-actor";
import { RAW, actorQuery, mountRegistry, waitFor } from "./helpers/actor-harness";
import { captureStoreLogs, describeWithService, freePort, tempDatabase, uniqueName } from "./helpers/services";

jest.setTimeout(60_000);

const meta = (name: string) => ({ actorId: randomUUID(), name, key: ["k"], createdAt: Date.now() });

describeWithService("postgres", "postgresStore", () => {
  let db: Awaited<ReturnType<typeof tempDatabase>>;
  beforeAll(async () => (db = await tempDatabase()));
  afterAll(() => db?.drop());

  it("creates its table once when many stores start at the same moment", async () => {
    const table = uniqueName("race");
    // Each store has its own pool, as separate processes would: their CREATE TABLEs really race.
    const stores = Array.from({ length: 8 }, () => postgresStore({ connectionString: db.url, table }));
    try {
      const results = await Promise.all(stores.map((store) => store.createIfAbsent(meta("racer"))));
      expect(results.filter((r) => r.created)).toHaveLength(1);
    } finally {
      await Promise.all(stores.map((store) => store.close!()));
    }
  });

  it("lands saves made without waiting in call order, each actor's and across actors", async () => {
    const store = postgresStore({ connectionString: db.url, table: uniqueName("order") });
    try {
      const ids = Array.from({ length: 20 }, () => randomUUID());
      const saves = ids.flatMap((id) => [1, 2, 3].map((n) => store.save(id, JSON.stringify(n), n === 2 ? { epoch: 5 } : undefined)));
      await Promise.all(saves);
      for (const id of ids) expect(await store.load(id)).toBe("3");
      await expect(store.save(ids[0], "4", { epoch: 4 })).rejects.toMatchObject({ code: "fenced" });
    } finally {
      await store.close!();
    }
  });

  it("leaves a pool it was given open, and ends one it made", async () => {
    const pool = new Pool({ connectionString: db.url });
    const store = postgresStore({ pool, table: "given_pool" });
    await store.save(randomUUID(), "1");
    await store.close!();
    expect((await pool.query("SELECT count(*)::int AS n FROM given_pool")).rows[0].n).toBe(1);
    await pool.end();

    // A save still queued when close() is called commits before the store's own pool ends.
    const own = postgresStore({ connectionString: db.url, table: "own_pool" });
    const id = randomUUID();
    await own.save(randomUUID(), "1");
    const last = own.save(id, '"last words"');
    await own.close!();
    await last;
    await expect(own.load(id)).rejects.toThrow("postgresStore: the store is closed");
    const reader = postgresStore({ connectionString: db.url, table: "own_pool" });
    expect(await reader.load(id)).toBe('"last words"');
    await reader.close!();
  });

  it("refuses bad options at construction", () => {
    expect(() => postgresStore({} as any)).toThrow("postgresStore: pass either `connectionString` or `pool`");
    expect(() => postgresStore({ connectionString: db.url, table: 'x"; DROP TABLE y; --' })).toThrow("invalid table name");
    expect(() => postgresStore({ connectionString: db.url, table: "a.b.c" })).toThrow("invalid table name");
  });

  it("gives a clear error, not a hang, when PostgreSQL does not answer at startup", async () => {
    const port = await freePort();
    const store = postgresStore({ connectionString: `postgres://postgres@127.0.0.1:${port}/test` });
    try {
      await expect(store.lookupKey("a", ["b"])).rejects.toThrow(/^postgresStore: cannot prepare table "express_actors": .*ECONNREFUSED/);
    } finally {
      await store.close!();
    }
  });

  it("runs the demo app on PostgreSQL: a count survives a restart", async () => {
    const increment = async (base: string) => {
      const res = await fetch(`${base}/registry/actors/raw/http/increment`, {
        method: "POST",
        headers: { "X-RivetKit-Actor-Query": actorQuery("counter", ["demo"]) },
      });
      expect(res.status).toBe(200);
      return (await res.json()).count;
    };
    const options = { port: 0, host: "127.0.0.1", cors: false as const, postgres: db.url, storeDir: "/nonexistent/never-used" };
    const first = await startDemo(options);
    try {
      expect(await increment(first.url)).toBe(1);
      expect(await increment(first.url)).toBe(2);
    } finally {
      await first.close();
    }
    const second = await startDemo(options);
    try {
      expect(await increment(second.url)).toBe(3);
    } finally {
      await second.close();
    }
    const pool = new Pool({ connectionString: db.url });
    try {
      expect((await pool.query("SELECT count(*)::int AS n FROM demo_actors WHERE state IS NOT NULL")).rows[0].n).toBe(1);
    } finally {
      await pool.end();
    }
  });

  describe("connections killed by the server (pg_terminate_backend)", () => {
    let registry: Registry<any>;
    let admin: Client;
    let logs: ReturnType<typeof captureStoreLogs>;
    let table: string;
    const post = () => request(mountRegistry(registry)).post(`${RAW}/`).set("X-RivetKit-Actor-Query", actorQuery("counter", ["k"]));

    beforeEach(async () => {
      logs = captureStoreLogs();
      table = uniqueName("fault");
      registry = setup({ use: { counter }, store: postgresStore({ connectionString: db.url, table }) });
      admin = new Client({ connectionString: db.url });
      await admin.connect();
    });
    afterEach(async () => {
      await registry.shutdown();
      await admin.end();
      logs.restore();
    });

    /** The count the table holds for the counter, read on the admin connection. */
    async function storedCount(): Promise<number | undefined> {
      const id = await registry.createServerClient().counter.get(["k"]).resolve();
      const { rows } = await admin.query(`SELECT state FROM ${table} WHERE actor_id = $1`, [id]);
      return rows[0]?.state ? JSON.parse(rows[0].state).count : undefined;
    }

    /** Backends of this database other than the admin's, optionally only those waiting on a lock. */
    async function storeBackends(waitingOnLock: boolean): Promise<number[]> {
      const { rows } = await admin.query(
        `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
         AND ($1::boolean = false OR wait_event_type = 'Lock')`,
        [waitingOnLock],
      );
      return rows.map((r) => r.pid);
    }

    it("mid-save: that save fails with 503, the actor stays dirty, the retry lands on a new connection", async () => {
      const before = await post();
      expect(before.status).toBe(200);
      expect(before.body).toEqual({ count: 1 });
      const id = await registry.createServerClient().counter.get(["k"]).resolve();

      // Lock the actor's row so its next save waits inside PostgreSQL, then kill that backend.
      await admin.query("BEGIN");
      await admin.query(`SELECT 1 FROM ${table} WHERE actor_id = $1 FOR UPDATE`, [id]);
      const pending = post().then((res) => res);
      let waiting: number[] = [];
      await waitFor(async () => (waiting = await storeBackends(true)).length > 0, "the save to wait on the row lock");
      for (const pid of waiting) await admin.query("SELECT pg_terminate_backend($1)", [pid]);
      const res = await pending;
      expect(res.status).toBe(503);
      expect(res.body.code).toBe("state_save_failed");
      await admin.query("ROLLBACK");

      // The acknowledged count was never lost; the unsaved one lands through the actor's retry.
      await waitFor(async () => (await storedCount()) === 2, "the retried save to land", 20_000);
      expect((await post().expect(200)).body).toEqual({ count: 3 });
      expect(await storedCount()).toBe(3);
      expect(logs.lines.join("\n")).toContain("saving state failed");
    });

    it("idle: the pool drops the dead connections without crashing and the next request succeeds", async () => {
      expect((await post().expect(200)).body).toEqual({ count: 1 });
      const idle = await storeBackends(false);
      expect(idle.length).toBeGreaterThan(0);
      for (const pid of idle) await admin.query("SELECT pg_terminate_backend($1)", [pid]);
      await waitFor(() => logs.lines.some((line) => line.includes("an idle connection failed")), "the pool to notice");
      expect((await post().expect(200)).body).toEqual({ count: 2 });
      expect(await storedCount()).toBe(2);
    });
  });
});
