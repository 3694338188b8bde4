import { mkdirSync } from "node:fs";
import * as nodePath from "node:path";
import type Database from "better-sqlite3";
import { loadDriver } from "./driver";
import { epochOf, fencedError } from "./fencing";
import { keyId, type ActorMeta, type StateStore } from "./types";

export interface SqliteStoreOptions {
  /** The database file; created, with its directory, on first use. */
  path: string;
}

const TABLE = "express_actors";
const BUSY_TIMEOUT_MS = 5000;

/** One queued write; `run` executes inside the shared transaction and may throw for itself alone. */
interface Write {
  run(): unknown;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/**
 * A StateStore in one SQLite file (better-sqlite3), in WAL mode with synchronous=FULL: a write
 * is on disk, power loss included, when its promise resolves. Writes queued in the same turn of the
 * event loop share one transaction, so concurrent saves share one fsync. Several processes may open
 * the same file on one host (not over a network file system).
 */
export function sqliteStore(options: SqliteStoreOptions): StateStore {
  if (typeof options?.path !== "string" || options.path === "") throw new TypeError("sqliteStore: `path` must be a file path");
  const Driver = loadDriver<typeof Database>("better-sqlite3", "sqliteStore");
  const file = options.path;

  let db: Database.Database | undefined;
  let statements: ReturnType<typeof prepare> | undefined;
  let closed = false;
  let queue: Write[] = [];

  function open() {
    if (closed) throw new Error("sqliteStore: the store is closed");
    if (statements) return statements;
    if (file !== ":memory:") mkdirSync(nodePath.dirname(nodePath.resolve(file)), { recursive: true });
    const opened = new Driver(file);
    try {
      opened.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      opened.pragma("journal_mode = WAL");
      opened.pragma("synchronous = FULL");
      // A row can exist without meta (an epoch claimed by a load) or without state (created, never saved).
      opened.exec(`CREATE TABLE IF NOT EXISTS ${TABLE} (
        actor_id TEXT PRIMARY KEY,
        key_id TEXT UNIQUE,
        meta TEXT,
        state TEXT,
        epoch INTEGER
      )`);
      statements = prepare(opened);
    } catch (err) {
      opened.close();
      throw err;
    }
    db = opened;
    return statements;
  }

  /** Queues a write for the next transaction; every write of one event-loop turn commits together. */
  function write<T>(run: (s: ReturnType<typeof prepare>) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let s: ReturnType<typeof prepare>;
      try {
        s = open();
      } catch (err) {
        reject(err);
        return;
      }
      if (queue.length === 0) setImmediate(flush);
      queue.push({ run: () => run(s), resolve: resolve as (value: unknown) => void, reject });
    });
  }

  function flush() {
    const batch = queue;
    queue = [];
    if (batch.length === 0) return;
    if (!db) {
      for (const w of batch) w.reject(new Error("sqliteStore: the store is closed"));
      return;
    }
    const conn = db;
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; err: unknown }> = [];
    try {
      conn
        .transaction(() => {
          for (const w of batch) {
            try {
              outcomes.push({ ok: true, value: w.run() });
            } catch (err) {
              // A failed statement is undone alone; a failure that ended the transaction fails the batch.
              if (!conn.inTransaction) throw err;
              outcomes.push({ ok: false, err });
            }
          }
        })
        .immediate();
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    batch.forEach((w, i) => {
      const outcome = outcomes[i];
      if (outcome.ok) w.resolve(outcome.value);
      else w.reject(outcome.err);
    });
  }

  const read = async <T>(run: (s: ReturnType<typeof prepare>) => T): Promise<T> => run(open());
  const parseMeta = (row: { meta: string } | undefined): ActorMeta | undefined => (row ? JSON.parse(row.meta) : undefined);

  return {
    createIfAbsent(meta) {
      const id = keyId(meta.name, meta.key);
      const text = JSON.stringify(meta);
      return write((s) => {
        if (s.create.run(meta.actorId, id, text).changes === 1) return { created: true, meta: JSON.parse(text) };
        return { created: false, meta: parseMeta(s.byKey.get(id) as { meta: string })! };
      });
    },
    lookupKey: (name, key) => read((s) => parseMeta(s.byKey.get(keyId(name, key)) as { meta: string } | undefined)),
    lookupId: (actorId) => read((s) => parseMeta(s.byId.get(actorId) as { meta: string } | undefined)),
    async load(actorId, options) {
      const epoch = epochOf(options);
      if (epoch === undefined) return read((s) => (s.state.get(actorId) as { state: string | null } | undefined)?.state ?? undefined);
      return write((s) => {
        const row = s.claim.get(actorId, epoch) as { state: string | null } | undefined;
        if (!row) throw fencedError(actorId, epoch, epochIn(s, actorId));
        return row.state ?? undefined;
      });
    },
    async save(actorId, state, options) {
      const epoch = epochOf(options);
      await write((s) => {
        if (epoch === undefined) s.save.run(actorId, state);
        else if (s.fencedSave.run(actorId, state, epoch).changes === 0) throw fencedError(actorId, epoch, epochIn(s, actorId));
      });
    },
    async delete(actorId) {
      await write((s) => s.delete.run(actorId));
    },
    async close() {
      if (closed) return;
      flush();
      closed = true;
      db?.close();
      db = undefined;
    },
  };
}

function epochIn(s: ReturnType<typeof prepare>, actorId: string): number | undefined {
  return (s.epoch.get(actorId) as { epoch: number | null } | undefined)?.epoch ?? undefined;
}

function prepare(db: Database.Database) {
  const t = TABLE;
  return {
    create: db.prepare(`INSERT INTO ${t} (actor_id, key_id, meta) VALUES (?, ?, ?) ON CONFLICT (key_id) DO NOTHING`),
    byKey: db.prepare(`SELECT meta FROM ${t} WHERE key_id = ?`),
    byId: db.prepare(`SELECT meta FROM ${t} WHERE actor_id = ? AND meta IS NOT NULL`),
    state: db.prepare(`SELECT state FROM ${t} WHERE actor_id = ?`),
    epoch: db.prepare(`SELECT epoch FROM ${t} WHERE actor_id = ?`),
    save: db.prepare(`INSERT INTO ${t} (actor_id, state) VALUES (?, ?) ON CONFLICT (actor_id) DO UPDATE SET state = excluded.state`),
    // Check and write in one statement: the update happens only if no higher epoch is stored.
    fencedSave: db.prepare(
      `INSERT INTO ${t} (actor_id, state, epoch) VALUES (?, ?, ?) ON CONFLICT (actor_id) DO UPDATE
       SET state = excluded.state, epoch = excluded.epoch WHERE ${t}.epoch IS NULL OR ${t}.epoch <= excluded.epoch`,
    ),
    claim: db.prepare(
      `INSERT INTO ${t} (actor_id, epoch) VALUES (?, ?) ON CONFLICT (actor_id) DO UPDATE
       SET epoch = excluded.epoch WHERE ${t}.epoch IS NULL OR ${t}.epoch <= excluded.epoch RETURNING state`,
    ),
    delete: db.prepare(`DELETE FROM ${t} WHERE actor_id = ?`),
  };
}
