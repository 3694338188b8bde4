// The store a bench child runs on, by name. PostgreSQL and Redis come from the runner, which makes a
// database (BENCH_PG_URL) and a key prefix (BENCH_REDIS_PREFIX) of the run's own and removes them after.
import { mkdtempSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileStore, memoryStore, type StateStore } from "express-actors";
import { postgresStore } from "express-actors/stores/postgres";
import { redisStore } from "express-actors/stores/redis";
import { sqliteStore } from "express-actors/stores/sqlite";

export const STORE_KINDS = ["memory", "file", "sqlite", "postgres", "redis"] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

export const REDIS_URL = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";

/** A new store of `kind`; a directory it needs is removed when the process exits. */
export function benchStore(kind: string): StateStore {
  const tempDir = () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "express-actors-bench-"));
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
    return dir;
  };
  switch (kind) {
    case "memory":
      return memoryStore();
    case "file":
      return fileStore({ dir: tempDir() });
    case "sqlite":
      return sqliteStore({ path: path.join(tempDir(), "actors.db") });
    case "postgres":
      return postgresStore({ connectionString: required("BENCH_PG_URL"), table: `bench_${process.pid}` });
    case "redis":
      return redisStore({ url: REDIS_URL, prefix: `${required("BENCH_REDIS_PREFIX")}${process.pid}:` });
    default:
      throw new Error(`unknown store "${kind}" (${STORE_KINDS.join(", ")})`);
  }
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through bench/run.ts`);
  return value;
}
