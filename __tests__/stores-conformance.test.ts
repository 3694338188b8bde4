import * as path from "node:path";
import { fileStore, memoryStore } from "express-actors";
import { postgresStore } from "express-actors/stores/postgres";
import { redisStore } from "express-actors/stores/redis";
import { sqliteStore } from "express-actors/stores/sqlite";
import { testStore } from "express-actors/testing";
import { tempDir } from "./helpers/actor-harness";
import { REDIS_URL, deletePrefix, describeWithService, tempDatabase, uniqueName } from "./helpers/services";

// The conformance kit (express-actors/testing) on all five stores, each on a database of its own.

jest.setTimeout(60_000);

// One memoryStore is the "database": every instance the kit asks for is a view of it.
const memory = memoryStore();
testStore("memoryStore", () => ({ ...memory }));

describe("on disk", () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => ({ dir, cleanup } = await tempDir("express-actors-kit-")));
  afterAll(() => cleanup());

  testStore("fileStore", () => fileStore({ dir: path.join(dir, "files") }));
  testStore("sqliteStore", () => sqliteStore({ path: path.join(dir, "kit.db") }));
});

describeWithService("postgres", "on PostgreSQL", () => {
  let db: Awaited<ReturnType<typeof tempDatabase>>;
  beforeAll(async () => (db = await tempDatabase()));
  afterAll(() => db?.drop());

  testStore("postgresStore", () => postgresStore({ connectionString: db.url }));
  testStore("postgresStore, schema-qualified table", () => postgresStore({ connectionString: db.url, table: "public.kit_actors" }));
});

describeWithService("redis", "on Redis", () => {
  const prefix = `${uniqueName("ea-test")}:`;
  afterAll(() => deletePrefix(prefix));

  testStore("redisStore", () => redisStore({ url: REDIS_URL, prefix }));
});
