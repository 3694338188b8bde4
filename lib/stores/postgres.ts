import { batcher } from "./batch";
import { loadDriver } from "./driver";
import { epochOf, fencedError } from "./fencing";
import { keyId, type ActorMeta, type StateStore } from "./types";
import { observedBy, storeObserver, type StoreObserver } from "./observed";

/** The part of a `pg` Pool this store uses; a `new Pool(...)` from pg ^8 fits it. */
export interface PgPool {
  query(text: string, values?: unknown[]): Promise<{ rows: any[]; rowCount: number | null }>;
  connect(): Promise<PgPoolClient>;
  end(): Promise<void>;
}

export interface PgPoolClient {
  query(text: string, values?: unknown[]): Promise<{ rows: any[]; rowCount: number | null }>;
  release(err?: Error | boolean): void;
}

export interface PostgresStoreOptions {
  /** A `postgres://` URL; the store makes its own pool and ends it in `close()`. */
  connectionString?: string;
  /** A pool of yours (pg ^8); the store never ends it. */
  pool?: PgPool;
  /** The table, optionally schema-qualified (`schema.table`); default `express_actors`. */
  table?: string;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * A StateStore in one PostgreSQL table (pg). Every write is one statement, so it commits on its own
 * (durable per the server's `synchronous_commit`, on by default) before its promise resolves; the
 * fencing check is part of that statement. Saves made in the same turn of the event loop share one
 * statement, so concurrent actors share round trips and commits. A connection lost mid-write
 * rejects that write only: the pool drops the broken connection and opens a new one for the next call.
 */
export function postgresStore(options: PostgresStoreOptions): StateStore {
  const { connectionString, pool: given } = options ?? {};
  if ((connectionString === undefined) === (given === undefined)) {
    throw new TypeError("postgresStore: pass either `connectionString` or `pool`");
  }
  if (connectionString !== undefined && typeof connectionString !== "string") {
    throw new TypeError("postgresStore: `connectionString` must be a string");
  }
  const table = quoteTable(options.table ?? "express_actors");
  const observer = storeObserver();
  const pool: PgPool = given ?? ownPool(connectionString!, observer);
  const sql = statements(table);

  let ready: Promise<void> | undefined;
  let closed: Promise<void> | undefined;

  /** Creates the table once; concurrent starters in other processes wait on the advisory lock. */
  const ensureTable = () =>
    (ready ??= createTable(pool, table).catch((err) => {
      // Not cached: the next call tries again (the server may just be starting).
      ready = undefined;
      throw new Error(`postgresStore: cannot prepare table ${table}: ${describe(err)}`, { cause: err });
    }));

  function checkOpen() {
    if (closed) throw new Error("postgresStore: the store is closed");
  }

  async function query(text: string, values: unknown[]) {
    await ensureTable();
    return pool.query(text, values);
  }

  /** One statement for a batch of saves; a row it does not return was fenced off. */
  const saves = batcher<{ actorId: string; state: string; epoch: number | null }>(async (batch) => {
    const { rows } = await query(sql.saveMany, [batch.map((s) => s.actorId), batch.map((s) => s.state), batch.map((s) => s.epoch)]);
    const written = new Set(rows.map((row) => row.actor_id as string));
    return Promise.all(batch.map((s) => (written.has(s.actorId) ? undefined : fenced(s.actorId, s.epoch!))));
  });

  const fenced = async (actorId: string, epoch: number) => {
    const { rows } = await query(sql.epoch, [actorId]);
    return fencedError(actorId, epoch, rows[0]?.epoch == null ? undefined : Number(rows[0].epoch));
  };

  return observedBy<StateStore>({
    async createIfAbsent(meta) {
      checkOpen();
      const id = keyId(meta.name, meta.key);
      const text = JSON.stringify(meta);
      for (;;) {
        if ((await query(sql.create, [meta.actorId, id, text])).rowCount === 1) return { created: true, meta: JSON.parse(text) };
        // ON CONFLICT waited for the winner's commit, so its row is visible now (unless deleted since).
        const { rows } = await query(sql.byKey, [id]);
        if (rows[0]) return { created: false, meta: JSON.parse(rows[0].meta) as ActorMeta };
      }
    },
    async lookupKey(name, key) {
      checkOpen();
      const { rows } = await query(sql.byKey, [keyId(name, key)]);
      return rows[0] ? JSON.parse(rows[0].meta) : undefined;
    },
    async lookupId(actorId) {
      checkOpen();
      const { rows } = await query(sql.byId, [actorId]);
      return rows[0] ? JSON.parse(rows[0].meta) : undefined;
    },
    async load(actorId, options) {
      const epoch = epochOf(options);
      checkOpen();
      if (epoch === undefined) return (await query(sql.state, [actorId])).rows[0]?.state ?? undefined;
      const { rows } = await query(sql.claim, [actorId, epoch]);
      if (!rows[0]) throw await fenced(actorId, epoch);
      return rows[0].state ?? undefined;
    },
    async save(actorId, state, options) {
      const epoch = epochOf(options);
      checkOpen();
      await saves.write(actorId, { actorId, state, epoch: epoch ?? null });
    },
    async delete(actorId) {
      checkOpen();
      await query(sql.delete, [actorId]);
    },
    close() {
      // Saves already made still commit; only then does the pool (if it is the store's own) end.
      return (closed ??= saves.idle().then(() => (given ? undefined : pool.end())));
    },
  }, observer);
}

function ownPool(connectionString: string, observer: { current: StoreObserver }): PgPool {
  const pg = loadDriver<typeof import("pg")>("pg", "postgresStore");
  const pool = new pg.Pool({ connectionString, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  // An idle connection that the server closes is an 'error' on the pool: without a listener, a crash.
  pool.on("error", (err) => {
    observer.current.log.warn({ err }, "postgresStore: an idle connection failed and was dropped");
    observer.current.connectionFailed?.();
  });
  return pool;
}

async function createTable(pool: PgPool, table: string) {
  const client = await pool.connect();
  let failure: Error | undefined;
  try {
    // CREATE TABLE IF NOT EXISTS alone can still fail when two sessions run it at once (a unique
    // violation on pg_type), so concurrent starters take turns on an advisory lock.
    await client.query("BEGIN");
    await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`express-actors:${table}`]);
    await client.query(`CREATE TABLE IF NOT EXISTS ${table} (
      actor_id text PRIMARY KEY,
      key_id text UNIQUE,
      meta text,
      state text,
      epoch bigint
    )`);
    await client.query("COMMIT");
  } catch (err) {
    failure = err as Error;
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  } finally {
    client.release(failure);
  }
}

/** `table` or `schema.table`, validated and quoted. */
function quoteTable(name: string): string {
  const parts = typeof name === "string" ? name.split(".") : [];
  if (parts.length < 1 || parts.length > 2 || !parts.every((p) => IDENTIFIER.test(p))) {
    throw new TypeError(`postgresStore: invalid table name ${JSON.stringify(name)} (letters, digits and _, optionally schema.table)`);
  }
  return parts.map((p) => `"${p}"`).join(".");
}

function statements(t: string) {
  // A row can exist without meta (an epoch claimed by a load) or without state (created, never saved).
  return {
    create: `INSERT INTO ${t} (actor_id, key_id, meta) VALUES ($1, $2, $3) ON CONFLICT (key_id) DO NOTHING`,
    byKey: `SELECT meta FROM ${t} WHERE key_id = $1`,
    byId: `SELECT meta FROM ${t} WHERE actor_id = $1 AND meta IS NOT NULL`,
    state: `SELECT state FROM ${t} WHERE actor_id = $1`,
    epoch: `SELECT epoch FROM ${t} WHERE actor_id = $1`,
    // A save without an epoch (NULL) is not checked and leaves the stored epoch as it is.
    saveMany: `INSERT INTO ${t} AS cur (actor_id, state, epoch)
      SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
      ON CONFLICT (actor_id) DO UPDATE SET state = EXCLUDED.state, epoch = COALESCE(EXCLUDED.epoch, cur.epoch)
      WHERE EXCLUDED.epoch IS NULL OR cur.epoch IS NULL OR cur.epoch <= EXCLUDED.epoch
      RETURNING actor_id`,
    claim: `INSERT INTO ${t} AS cur (actor_id, epoch) VALUES ($1, $2) ON CONFLICT (actor_id)
      DO UPDATE SET epoch = EXCLUDED.epoch WHERE cur.epoch IS NULL OR cur.epoch <= EXCLUDED.epoch RETURNING state`,
    delete: `DELETE FROM ${t} WHERE actor_id = $1`,
  };
}

/** A driver error in one line: connection errors can have an empty message and only a code. */
function describe(err: unknown): string {
  const e = err as { message?: string; code?: string; errors?: Array<{ message?: string }> };
  return e?.message || e?.errors?.[0]?.message || e?.code || String(err);
}
