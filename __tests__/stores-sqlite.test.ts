import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import * as path from "node:path";
import { createInterface } from "node:readline";
import Database from "better-sqlite3";
import { setup } from "express-actors";
import { sqliteStore } from "express-actors/stores/sqlite";
import { counter } from "./fixtures/counter-actor";
import { RAW, actorQuery, tempDir } from "./helpers/actor-harness";

jest.setTimeout(60_000);

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDir("express-actors-sqlite-")));
afterEach(() => cleanup());

it("creates the file and its directories, in WAL mode", async () => {
  const file = path.join(dir, "deep", "er", "actors.db");
  const store = sqliteStore({ path: file });
  await store.save(randomUUID(), "{}");
  await store.close!();
  const db = new Database(file, { readonly: true });
  try {
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
  } finally {
    db.close();
  }
});

it("commits writes still queued when it is closed, then refuses new ones", async () => {
  const file = path.join(dir, "actors.db");
  const store = sqliteStore({ path: file });
  const id = randomUUID();
  const saved = store.save(id, '"last words"');
  await store.close!();
  await saved;
  await expect(store.save(id, "1")).rejects.toThrow("sqliteStore: the store is closed");
  const again = sqliteStore({ path: file });
  expect(await again.load(id)).toBe('"last words"');
  await again.close!();
});

it("refuses a missing path at construction", () => {
  expect(() => sqliteStore({} as any)).toThrow("sqliteStore: `path` must be a file path");
});

it("a child process killed with SIGKILL keeps every acknowledged write", async () => {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "fixtures", "counter-server.ts"), dir], {
    cwd: path.join(__dirname, ".."),
    env: { ...process.env, STORE: "sqlite" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  try {
    let stderr = "";
    child.stderr.on("data", (chunk) => (stderr += chunk));
    const exited = new Promise((resolve) => child.once("exit", resolve));
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout }).once("line", resolve);
      child.once("exit", (code) => reject(new Error(`child exited with ${code}: ${stderr}`)));
    });
    const url = `http://127.0.0.1:${JSON.parse(line).port}${RAW}/`;
    // Concurrent requests, so acknowledged saves come from shared transactions too.
    const acknowledged = await Promise.all(
      Array.from({ length: 30 }, async () => {
        const res = await fetch(url, { method: "POST", headers: { "X-RivetKit-Actor-Query": actorQuery("counter", ["k"]) } });
        expect(res.status).toBe(200);
        return (await res.json()).count as number;
      }),
    );
    child.kill("SIGKILL");
    await exited;

    const registry = setup({ use: { counter }, store: sqliteStore({ path: path.join(dir, "actors.db") }) });
    try {
      const res = await registry.createServerClient().counter.get(["k"]).fetch("/");
      expect((await res.json()).count).toBe(Math.max(...acknowledged));
    } finally {
      await registry.shutdown();
    }
  } finally {
    child.kill("SIGKILL");
  }
});
