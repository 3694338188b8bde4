import { randomUUID } from "node:crypto";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import request from "supertest";
import { actor, fileStore, setup, type ActorMeta } from "express-actors";
import { RAW, mountRegistry, tempDir } from "./helpers/actor-harness";

const counter = actor({
  state: { count: 0, note: "" },
  onAuth: () => null,
  onFetch: async (c, req) => {
    if (req.method === "POST") {
      c.state.count++;
      c.state.note = await req.text();
    }
    return Response.json(c.state);
  },
  options: { stateSaveInterval: 60_000, sleepTimeout: 60_000 },
});

/** Every file below `dir`, relative to it. */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

const meta = (name: string, key: string[]): ActorMeta => ({ actorId: randomUUID(), name, key, createdAt: Date.now() });

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDir()));
afterEach(() => cleanup());

describe("fileStore writes", () => {
  it("leaves only whole JSON files behind, and no temp files", async () => {
    const registry = setup({ use: { counter }, store: fileStore({ dir }) });
    const client = registry.createServerClient();
    await Promise.all(
      ["a", "b", "c"].map(async (key) => {
        for (let i = 0; i < 10; i++) await (await client.counter.getOrCreate([key]).fetch("/", { method: "POST", body: `note ${i}` })).text();
      }),
    );
    await registry.shutdown();
    const files = await listFiles(dir);
    expect(files.filter((f) => path.basename(f).startsWith("."))).toEqual([]);
    for (const file of files) JSON.parse(await readFile(path.join(dir, file), "utf8"));
    expect(files.filter((f) => f.startsWith("state" + path.sep))).toHaveLength(3);
  });

  it("ignores a torn temp file left by a crash mid-write", async () => {
    const first = setup({ use: { counter }, store: fileStore({ dir }) });
    const handle = first.createServerClient().counter.getOrCreate(["k"]);
    await (await handle.fetch("/", { method: "POST", body: "kept" })).text();
    const id = await handle.resolve();
    await first.shutdown();

    // What a process killed between write() and rename() leaves next to the real file.
    await writeFile(path.join(dir, "state", ".tmp-999999-deadbeef0000"), '{"count": 99, "no');
    await writeFile(path.join(dir, "state", `${id}.json.tmp`), '{"count": 98');

    const second = setup({ use: { counter }, store: fileStore({ dir }) });
    const client = second.createServerClient();
    expect(await (await client.counter.get(["k"]).fetch("/")).json()).toEqual({ count: 1, note: "kept" });
    expect(await (await client.counter.get(["k"]).fetch("/", { method: "POST", body: "next" })).json()).toEqual({
      count: 2,
      note: "next",
    });
    await second.shutdown();
    expect(JSON.parse(await readFile(path.join(dir, "state", `${id}.json`), "utf8"))).toEqual({ count: 2, note: "next" });
  });

  it("creates a missing directory tree and keeps unicode and large states intact", async () => {
    const store = fileStore({ dir: path.join(dir, "deep", "er") });
    const big = JSON.stringify({ text: "héllo ✓ 🎉".repeat(10_000), list: Array.from({ length: 1000 }, (_, i) => i) });
    const m = meta("counter", ["u"]);
    expect(await store.createIfAbsent(m)).toEqual({ created: true, meta: m });
    await store.save(m.actorId, big);
    expect(await fileStore({ dir: path.join(dir, "deep", "er") }).load(m.actorId)).toBe(big);
  });
});

describe("fileStore records", () => {
  it("finds actors by key and by id, with their input", async () => {
    const store = fileStore({ dir });
    const m = { ...meta("room", ["lobby", "1"]), input: { topic: "hi" } };
    await store.createIfAbsent(m);
    const reopened = fileStore({ dir });
    expect(await reopened.lookupKey("room", ["lobby", "1"])).toEqual(m);
    expect(await reopened.lookupId(m.actorId)).toEqual(m);
    expect(await reopened.lookupKey("room", ["lobby"])).toBeUndefined();
    expect(await reopened.lookupKey("other", ["lobby", "1"])).toBeUndefined();
    expect(await reopened.load(m.actorId)).toBeUndefined();
  });

  it("keeps keys that look like paths, or that join to the same text, apart and inside the directory", async () => {
    const store = fileStore({ dir });
    const keys = [["../../escape"], ["a/b"], ["a", "b"], ["a", "", "b"], [], [""], ["/etc/passwd"], ["ü"], ["u\u0308"]];
    const metas = keys.map((key) => meta("counter", key));
    for (const m of metas) expect((await store.createIfAbsent(m)).created).toBe(true);
    for (const m of metas) expect((await store.lookupKey("counter", m.key))?.actorId).toBe(m.actorId);
    const root = path.join(dir, "store");
    const inside = fileStore({ dir: root });
    for (const m of metas.slice(0, 2)) await inside.createIfAbsent({ ...m, actorId: randomUUID() });
    expect((await readdir(dir)).sort()).toEqual(["actors", "keys", "state", "store"]);
    for (const file of await listFiles(root)) expect(file).toMatch(/^(keys|actors)[\\/][0-9a-f-]+\.json$/);
  });

  it("lets exactly one of two concurrent creates on the same key win, across two stores on one directory", async () => {
    const a = fileStore({ dir });
    const b = fileStore({ dir });
    for (let i = 0; i < 20; i++) {
      const key = [`k${i}`];
      const [ra, rb] = await Promise.all([a.createIfAbsent(meta("counter", key)), b.createIfAbsent(meta("counter", key))]);
      expect([ra.created, rb.created].filter(Boolean)).toHaveLength(1);
      expect(ra.meta).toEqual(rb.meta);
      expect(await a.lookupKey("counter", key)).toEqual(ra.meta);
    }
    // The losers' id records are gone: one record per key.
    expect((await readdir(path.join(dir, "actors"))).filter((f) => f.endsWith(".json"))).toHaveLength(20);
  });

  it("gives two registries on one directory the same actor for a key", async () => {
    const one = setup({ use: { counter }, store: fileStore({ dir }) });
    const two = setup({ use: { counter }, store: fileStore({ dir }) });
    const [idOne, idTwo] = await Promise.all([
      one.createServerClient().counter.getOrCreate(["shared"]).resolve(),
      two.createServerClient().counter.getOrCreate(["shared"]).resolve(),
    ]);
    expect(idOne).toBe(idTwo);
    const created = await Promise.allSettled([
      one.createServerClient().counter.create(["solo"]),
      two.createServerClient().counter.create(["solo"]),
    ]);
    expect(created.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
    expect(created.find((r): r is PromiseRejectedResult => r.status === "rejected")!.reason.code).toBe("actor_already_exists");
    await Promise.all([one.shutdown(), two.shutdown()]);
  });

  it("deletes an actor's records and state", async () => {
    const store = fileStore({ dir });
    const m = meta("counter", ["gone"]);
    await store.createIfAbsent(m);
    await store.save(m.actorId, '{"count":1}');
    await store.delete(m.actorId);
    expect(await store.lookupKey("counter", ["gone"])).toBeUndefined();
    expect(await store.lookupId(m.actorId)).toBeUndefined();
    expect(await store.load(m.actorId)).toBeUndefined();
    expect((await store.createIfAbsent(meta("counter", ["gone"]))).created).toBe(true);
  });
});

describe("fileStore and hostile actor ids", () => {
  const evilIds = ["../x", "../../x", "..", ".", "a/b", "/etc/passwd", "x\0y", "..\\x", "%2e%2e%2fx"];

  it("answers 404 to getForId with a path-like id, never reading outside the directory", async () => {
    // Records a traversing lookup would find: actors/../x.json and actors/../../x.json.
    const root = path.join(dir, "store");
    await mkdir(root);
    const planted = { actorId: "../x", name: "counter", key: ["planted"], createdAt: 0 };
    await writeFile(path.join(root, "x.json"), JSON.stringify(planted));
    await writeFile(path.join(dir, "x.json"), JSON.stringify({ ...planted, actorId: "../../x" }));

    const registry = setup({ use: { counter }, store: fileStore({ dir: root }) });
    const app = mountRegistry(registry);
    for (const actorId of evilIds) {
      const res = await request(app)
        .get(`${RAW}/`)
        .set("X-RivetKit-Actor-Query", JSON.stringify({ getForId: { name: "counter", actorId } }));
      expect([actorId, res.status, res.body.code]).toEqual([actorId, 404, "actor_not_found"]);
    }
    await registry.shutdown();
  });

  it("refuses to load, save or delete under a path-like id", async () => {
    const store = fileStore({ dir });
    await mkdir(path.join(dir, "state"), { recursive: true });
    await writeFile(path.join(dir, "secret.json"), '"secret"');
    for (const actorId of evilIds) {
      expect(await store.lookupId(actorId)).toBeUndefined();
      await expect(store.load(actorId)).rejects.toThrow(/invalid actor id/);
      await expect(store.save(actorId, "{}")).rejects.toThrow(/invalid actor id/);
      await expect(store.delete(actorId)).rejects.toThrow(/invalid actor id/);
    }
    await expect(store.load("../secret")).rejects.toThrow(/invalid actor id/);
    expect(await readFile(path.join(dir, "secret.json"), "utf8")).toBe('"secret"');
  });
});
