import { randomUUID } from "node:crypto";
import request from "supertest";
import { Redis } from "ioredis";
import { setup, type Registry } from "express-actors";
import { redisStore } from "express-actors/stores/redis";
import { counter } from "./fixtures/counter-actor";
import { RAW, actorQuery, mountRegistry, waitFor } from "./helpers/actor-harness";
import { OwnRedis, REDIS_URL, captureStoreLogs, deletePrefix, describeWithService, freePort, uniqueName } from "./helpers/services";

jest.setTimeout(60_000);

const meta = (name: string) => ({ actorId: randomUUID(), name, key: ["k"], createdAt: Date.now() });

describeWithService("redis", "redisStore on the shared Redis", () => {
  const prefix = `${uniqueName("ea-test")}:`;
  afterAll(() => deletePrefix(prefix));

  it("writes only keys under its prefix", async () => {
    const store = redisStore({ url: REDIS_URL, prefix });
    const m = meta("scoped");
    await store.createIfAbsent(m);
    await store.save(m.actorId, "{}", { epoch: 1 });
    await store.close!();
    const redis = new Redis(REDIS_URL);
    try {
      expect((await redis.keys(`${prefix}*`)).sort()).toEqual([`${prefix}actor:${m.actorId}`, `${prefix}key:["scoped","k"]`]);
    } finally {
      redis.disconnect();
    }
  });

  it("leaves a client it was given open, and quits one it made", async () => {
    const client = new Redis(REDIS_URL);
    const store = redisStore({ client, prefix });
    await store.save(randomUUID(), "1");
    await store.close!();
    expect(await client.ping()).toBe("PONG");
    client.disconnect();

    const own = redisStore({ url: REDIS_URL, prefix });
    await own.save(randomUUID(), "1");
    await own.close!();
    await expect(own.load(randomUUID())).rejects.toThrow("redisStore: the store is closed");
  });

  it("refuses options without exactly one of url and client", () => {
    expect(() => redisStore({ prefix } as any)).toThrow("redisStore: pass either `url` or `client`");
    expect(() => redisStore({ url: REDIS_URL, client: new Redis({ lazyConnect: true }) })).toThrow("either");
  });
});

describeWithService("redis", "redisStore when Redis fails", () => {
  let redis: OwnRedis;
  beforeAll(async () => (redis = await OwnRedis.start()));
  afterAll(() => redis?.kill());

  it("gives a clear error, not a hang, when Redis does not answer at startup", async () => {
    const port = await freePort();
    const log = captureStoreLogs();
    const store = redisStore({ url: `redis://127.0.0.1:${port}` });
    try {
      await expect(store.lookupKey("a", ["b"])).rejects.toThrow(`redisStore: no answer from Redis at 127.0.0.1:${port} (connect ECONNREFUSED`);
      await expect(store.save(randomUUID(), "1")).rejects.toThrow("no answer from Redis");
    } finally {
      await store.close!();
      log.restore();
    }
  });

  /** A registry on `store` serving the counter through Express, plus a second client to read Redis directly. */
  function app(store: ReturnType<typeof redisStore>) {
    const registry = setup({ use: { counter }, store });
    const post = () => request(mountRegistry(registry)).post(`${RAW}/`).set("X-RivetKit-Actor-Query", actorQuery("counter", ["k"]));
    return { registry, post };
  }

  /** The count Redis holds for the live counter, read through a store instance of its own. */
  async function storedCount(registry: Registry<any>, prefix: string): Promise<number | undefined> {
    // The registry knows the live actor's id even after a restart emptied Redis.
    const id = await registry.createServerClient().counter.get(["k"]).resolve();
    const reader = redisStore({ url: redis.url, prefix });
    try {
      const text = await reader.load(id);
      return text ? JSON.parse(text).count : undefined;
    } finally {
      await reader.close!();
    }
  }

  /** Holds writes on the server (CLIENT PAUSE WRITE) until `unpause()`; reads still answer. */
  async function pauseWrites() {
    const admin = new Redis(redis.url);
    await admin.client("PAUSE", 30_000, "WRITE");
    return {
      admin,
      /** The connections with a write held by the pause (flag b): the store's, mid-save. */
      async blocked(): Promise<string[]> {
        const list = (await admin.client("LIST")) as string;
        return list
          .split("\n")
          .filter((line) => /\bflags=\w*b/.test(line))
          .map((line) => /\bid=(\d+)/.exec(line)![1]);
      },
    };
  }

  it("a connection killed mid-save: that save fails with 503, the store reconnects, the retry lands", async () => {
    const prefix = `${uniqueName("ea-fault")}:`;
    const log = captureStoreLogs();
    const { registry, post } = app(redisStore({ url: redis.url, prefix }));
    try {
      expect((await post().expect(200)).body).toEqual({ count: 1 });
      const paused = await pauseWrites();
      const pending = post().then((res) => res);
      let blocked: string[] = [];
      await waitFor(async () => (blocked = await paused.blocked()).length > 0, "the save to wait on the paused server");
      for (const id of blocked) await paused.admin.client("KILL", "ID", id);
      // Redis closes a killed client once the pause is over.
      await paused.admin.client("UNPAUSE");
      paused.admin.disconnect();
      const res = await pending;
      expect(res.status).toBe(503);
      expect(res.body.code).toBe("state_save_failed");

      // The actor kept its unsaved count and retries on its own; the acknowledged 1 was never lost.
      await waitFor(async () => (await storedCount(registry, prefix)) === 2, "the retried save to land", 20_000);
      expect((await post().expect(200)).body).toEqual({ count: 3 });
      expect(await storedCount(registry, prefix)).toBe(3);
      expect(log.lines.join("\n")).toContain("saving state failed");
    } finally {
      await registry.shutdown();
      log.restore();
    }
  });

  it("Redis killed and restarted: saves fail with 503 meanwhile, then the actor's state lands", async () => {
    const prefix = `${uniqueName("ea-fault")}:`;
    const log = captureStoreLogs();
    const { registry, post } = app(redisStore({ url: redis.url, prefix }));
    try {
      expect((await post().expect(200)).body).toEqual({ count: 1 });
      const paused = await pauseWrites();
      const pending = post().then((res) => res);
      await waitFor(async () => (await paused.blocked()).length > 0, "the save to wait on the paused server");
      paused.admin.disconnect();
      await redis.kill();
      const res = await pending;
      expect(res.status).toBe(503);
      expect(res.body.code).toBe("state_save_failed");
      const whileDown = await post();
      expect(whileDown.status).toBe(503);
      expect(whileDown.body.code).toBe("state_save_failed");

      // This server keeps nothing on disk, so the restart empties it: the live actor writes its
      // whole current state again once the store has reconnected.
      await redis.restart();
      await waitFor(async () => (await storedCount(registry, prefix)) === 3, "the actor's state to land", 30_000);
      expect((await post().expect(200)).body).toEqual({ count: 4 });
    } finally {
      await registry.shutdown();
      log.restore();
    }
  });
});
