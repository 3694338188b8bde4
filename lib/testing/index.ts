import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import type { ActorMeta, StateStore } from "../stores/types";

export interface TestStoreOptions {
  /** The test framework's `describe`; default: the global one (jest, or node:test's import). */
  describe?: (name: string, fn: () => void) => unknown;
  /** The test framework's `test`; default: the global one. */
  test?: (name: string, fn: () => Promise<void>) => unknown;
}

/**
 * Each call opens a new instance over the same database: tests use two at once for atomicity
 * across instances, and a fresh one to read back what another wrote. The kit closes every store it
 * opens; the database itself (a file, a table, a key prefix) is yours to make and remove.
 */
export type StoreFactory = () => StateStore | Promise<StateStore>;

type Fn = () => Promise<void>;

/**
 * Registers the StateStore conformance suite (SPEC §8) under `describe(name)`. Every test uses
 * its own actor names, so the suite can run again on a database that keeps earlier runs.
 */
export function testStore(name: string, makeStore: StoreFactory, options: TestStoreOptions = {}): void {
  const describe = options.describe ?? (globalThis as any).describe;
  const test = options.test ?? (globalThis as any).test;
  if (typeof describe !== "function" || typeof test !== "function") {
    throw new TypeError("testStore: no global describe/test; pass { describe, test } from your test framework");
  }
  const run = randomBytes(4).toString("hex");
  let counter = 0;
  /** An actor name no other test (nor an earlier run) uses. */
  const fresh = () => `kit-${run}-${++counter}`;

  /** Opens `count` instances, runs `fn` with them and closes them all, whatever happens. */
  async function using<T>(count: number, fn: (...stores: StateStore[]) => Promise<T>): Promise<T> {
    const stores: StateStore[] = [];
    try {
      for (let i = 0; i < count; i++) stores.push(await makeStore());
      return await fn(...stores);
    } finally {
      for (const store of stores) await store.close?.();
    }
  }
  const one = (fn: (store: StateStore) => Promise<void>): Fn => () => using(1, fn);
  const two = (fn: (a: StateStore, b: StateStore) => Promise<void>): Fn => () => using(2, fn);

  describe(name, () => {
    describe("create-if-absent", () => {
      test(
        "creates once; a second create of the key gets the first record",
        one(async (store) => {
          const first = meta(fresh(), ["k"], { input: { nested: ["x", 1, null, { é: true }] } });
          assert.deepEqual(await store.createIfAbsent(first), { created: true, meta: first });
          const second = meta(first.name, ["k"]);
          assert.deepEqual(await store.createIfAbsent(second), { created: false, meta: first });
          assert.equal(await store.lookupId(second.actorId), undefined);
        }),
      );

      test(
        "100 concurrent callers on one instance: exactly one creates, all get its record",
        one((store) => raceCreate([store], 100, fresh())),
      );

      test(
        "100 concurrent callers on two instances over one database: exactly one creates",
        two((a, b) => raceCreate([a, b], 100, fresh())),
      );
    });

    describe("lookups and round trips", () => {
      test(
        "finds an actor by key and by id; unknown keys, names and ids are undefined",
        one(async (store) => {
          const m = meta(fresh(), ["room", "1"], { input: "hello" });
          await store.createIfAbsent(m);
          assert.deepEqual(await store.lookupKey(m.name, ["room", "1"]), m);
          assert.deepEqual(await store.lookupId(m.actorId), m);
          assert.equal(await store.lookupKey(m.name, ["room", "2"]), undefined);
          assert.equal(await store.lookupKey(m.name, ["room"]), undefined);
          assert.equal(await store.lookupKey(m.name + "x", ["room", "1"]), undefined);
          assert.equal(await store.lookupId(randomUUID()), undefined);
        }),
      );

      test(
        "keeps keys apart and exact: unicode, empty, and keys that differ only by escaping",
        two(async (a, b) => {
          const name = fresh();
          const keys = [
            [], [""], ["", ""], ["a"], ["a", "b"], ["a,b"], ["a/b"], ["a%2Fb"], ['a","b'], ["a\\", "b"], ['a\\","b'],
            ["a\\\\", "b"], ["[a]"], ["é"], ["e\u0301"], ["🎉 ✓ 中文"], ["\u0000"], ["line\nbreak"], ["\ud800"], [" a"],
          ];
          const created = await Promise.all(keys.map((key) => a.createIfAbsent(meta(name, key))));
          assert.ok(created.every((r) => r.created), "every distinct key is a new actor");
          assert.equal(new Set(created.map((r) => r.meta.actorId)).size, keys.length);
          const other = meta(name + "-other", ["a"]);
          assert.equal((await a.createIfAbsent(other)).created, true, "the same key under another name is another actor");
          for (const [i, key] of keys.entries()) {
            assert.deepEqual(await b.lookupKey(name, key), created[i].meta, `key ${JSON.stringify(key)}`);
            assert.deepEqual((await b.lookupId(created[i].meta.actorId))?.key, key);
          }
        }),
      );

      test(
        "returns state exactly as saved: unicode, control characters, 1 MiB, and overwrites",
        two(async (a, b) => {
          const m = meta(fresh(), ["s"]);
          await a.createIfAbsent(m);
          assert.equal(await a.load(m.actorId), undefined, "never saved");
          const unicode = JSON.stringify({ text: "héllo ✓ 🎉 中文 \u0000 \u2028 \ud800 \"q\" \\", n: -0.5 });
          await a.save(m.actorId, unicode);
          assert.equal(await b.load(m.actorId), unicode);
          const big = JSON.stringify({ blob: "ü€🎉x".repeat(210_000) });
          assert.ok(big.length > 1024 * 1024);
          await a.save(m.actorId, big);
          assert.equal(await b.load(m.actorId), big);
          await b.save(m.actorId, "null");
          assert.equal(await a.load(m.actorId), "null");
        }),
      );

      test(
        "delete removes the record, both lookups and the state; the key can be created again",
        one(async (store) => {
          const m = meta(fresh(), ["d"]);
          const kept = meta(m.name, ["kept"]);
          await store.createIfAbsent(m);
          await store.createIfAbsent(kept);
          await store.save(m.actorId, '{"n":1}');
          await store.save(kept.actorId, '{"n":2}');
          await store.delete(m.actorId);
          assert.equal(await store.lookupKey(m.name, ["d"]), undefined);
          assert.equal(await store.lookupId(m.actorId), undefined);
          assert.equal(await store.load(m.actorId), undefined);
          assert.deepEqual(await store.lookupKey(m.name, ["kept"]), kept);
          assert.equal(await store.load(kept.actorId), '{"n":2}');
          await store.delete(randomUUID());
          const again = meta(m.name, ["d"]);
          assert.deepEqual(await store.createIfAbsent(again), { created: true, meta: again });
        }),
      );
    });

    describe("fencing", () => {
      test(
        "a save with a lower epoch than the highest seen is fenced and writes nothing",
        one(async (store) => {
          const id = await created(store, fresh());
          await store.save(id, '"two"', { epoch: 2 });
          await rejectsFenced(store.save(id, '"one"', { epoch: 1 }));
          assert.equal(await store.load(id), '"two"');
          await store.save(id, '"two again"', { epoch: 2 });
          await store.save(id, '"three"', { epoch: 3 });
          await rejectsFenced(store.save(id, '"stale"', { epoch: 2 }));
          await rejectsFenced(store.load(id, { epoch: 2 }));
          assert.equal(await store.load(id, { epoch: 3 }), '"three"');
        }),
      );

      test(
        "a load with an epoch counts, even for an actor never saved",
        one(async (store) => {
          const id = await created(store, fresh());
          assert.equal(await store.load(id, { epoch: 5 }), undefined);
          await rejectsFenced(store.save(id, '"old owner"', { epoch: 4 }));
          await rejectsFenced(store.load(id, { epoch: 4 }));
          assert.equal(await store.load(id), undefined, "a fenced save wrote nothing");
          await store.save(id, '"new owner"', { epoch: 5 });
          assert.equal(await store.load(id), '"new owner"');
          const unknown = randomUUID();
          assert.equal(await store.load(unknown, { epoch: 7 }), undefined);
          await rejectsFenced(store.save(unknown, "1", { epoch: 6 }));
        }),
      );

      test(
        "without an epoch nothing is checked and the stored epoch stays",
        one(async (store) => {
          const id = await created(store, fresh());
          await store.save(id, '"e3"', { epoch: 3 });
          await store.save(id, '"plain"');
          assert.equal(await store.load(id), '"plain"');
          await rejectsFenced(store.save(id, '"e2"', { epoch: 2 }));
          await store.save(id, '"e3 again"', { epoch: 3 });
          assert.equal(await store.load(id), '"e3 again"');
        }),
      );

      test(
        "epochs are kept per actor",
        one(async (store) => {
          const name = fresh();
          const [x, y] = [await created(store, name, ["x"]), await created(store, name, ["y"])];
          await store.save(x, "1", { epoch: 9 });
          await store.save(y, "2", { epoch: 1 });
          assert.equal(await store.load(y, { epoch: 2 }), "2");
        }),
      );

      test(
        "the highest epoch is shared by instances over one database",
        two(async (a, b) => {
          const id = await created(a, fresh());
          await a.save(id, '"a"', { epoch: 3 });
          await rejectsFenced(b.save(id, '"b"', { epoch: 2 }));
          await rejectsFenced(b.load(id, { epoch: 1 }));
          assert.equal(await b.load(id, { epoch: 4 }), '"a"');
          await rejectsFenced(a.save(id, '"a late"', { epoch: 3 }));
          assert.equal(await a.load(id), '"a"');
        }),
      );

      test(
        "concurrent claims from two instances: the highest epoch always wins",
        two(async (a, b) => {
          const id = await created(a, fresh());
          const epochs = shuffle(Array.from({ length: 24 }, (_, i) => i + 1));
          const results = await Promise.allSettled(
            epochs.map((epoch, i) => {
              const store = i % 2 ? a : b;
              return i % 3 === 0 ? store.load(id, { epoch }) : store.save(id, JSON.stringify(epoch), { epoch });
            }),
          );
          for (const [i, result] of results.entries()) {
            if (result.status === "rejected") {
              assert.equal((result.reason as { code?: unknown }).code, "fenced", `epoch ${epochs[i]}: ${result.reason}`);
            }
          }
          const top = epochs.indexOf(24);
          assert.equal(results[top].status, "fulfilled", "the highest epoch is never fenced");
          const saved = await a.load(id);
          // The highest saver's state, unless the highest epoch was a load: then a save below it, or none.
          if (top % 3 !== 0) assert.equal(saved, "24");
          else assert.ok(saved === undefined || Number(saved) < 24);
          await rejectsFenced(b.save(id, '"late"', { epoch: 23 }));
          await b.save(id, '"top"', { epoch: 24 });
        }),
      );

      test(
        "an epoch that is not a positive integer is refused, and nothing is written",
        one(async (store) => {
          const id = await created(store, fresh());
          await store.save(id, '"kept"');
          for (const epoch of [0, -1, 1.5, NaN, Infinity, 2 ** 53, "2", null]) {
            await assert.rejects(store.save(id, '"bad"', { epoch: epoch as number }), (err: { code?: unknown }) => {
              assert.notEqual(err.code, "fenced", `epoch ${String(epoch)}`);
              return true;
            });
            await assert.rejects(store.load(id, { epoch: epoch as number }));
          }
          assert.equal(await store.load(id), '"kept"');
          await store.save(id, '"one"', { epoch: 1 });
        }),
      );

      test(
        "epochs up to Number.MAX_SAFE_INTEGER compare exactly",
        one(async (store) => {
          const id = await created(store, fresh());
          const top = Number.MAX_SAFE_INTEGER;
          await store.save(id, '"top"', { epoch: top });
          await rejectsFenced(store.save(id, '"below"', { epoch: top - 1 }));
          assert.equal(await store.load(id, { epoch: top }), '"top"');
        }),
      );
    });

    describe("close and reopen", () => {
      test("close settles, twice too; a new instance reads back records, state and epochs", async () => {
        const name = fresh();
        const m = meta(name, ["persisted", "é"], { input: [1, "two"] });
        const first = await makeStore();
        try {
          await first.createIfAbsent(m);
          await first.save(m.actorId, '{"count":7}', { epoch: 4 });
        } finally {
          await first.close?.();
          await first.close?.();
        }
        await using(1, async (second) => {
          assert.deepEqual(await second.lookupKey(name, ["persisted", "é"]), m);
          assert.deepEqual(await second.lookupId(m.actorId), m);
          assert.equal(await second.load(m.actorId), '{"count":7}');
          await rejectsFenced(second.save(m.actorId, '{"count":0}', { epoch: 3 }));
          assert.deepEqual(await second.createIfAbsent(meta(name, ["persisted", "é"])), { created: false, meta: m });
        });
      });

      test("calls on a closed instance settle (resolve or reject), never hang", async () => {
        const store = await makeStore();
        await store.close?.();
        const calls: Array<Promise<unknown>> = [
          store.lookupId(randomUUID()),
          store.lookupKey(fresh(), ["k"]),
          store.load(randomUUID()),
          store.save(randomUUID(), "1"),
        ];
        for (const call of calls) await settlesWithin(call, 5000);
      });
    });
  });
}

function meta(name: string, key: string[], extra: Partial<ActorMeta> = {}): ActorMeta {
  return { actorId: randomUUID(), name, key, createdAt: Date.now(), ...extra };
}

async function created(store: StateStore, name: string, key: string[] = ["k"]): Promise<string> {
  const m = meta(name, key);
  assert.equal((await store.createIfAbsent(m)).created, true);
  return m.actorId;
}

async function raceCreate(stores: StateStore[], callers: number, name: string) {
  const metas = Array.from({ length: callers }, () => meta(name, ["contended"]));
  const results = await Promise.all(metas.map((m, i) => stores[i % stores.length].createIfAbsent(m)));
  const winners = results.filter((r) => r.created);
  assert.equal(winners.length, 1, `${winners.length} callers created the actor`);
  const winner = winners[0].meta;
  assert.ok(metas.some((m) => m.actorId === winner.actorId));
  for (const r of results) assert.deepEqual(r.meta, winner);
  for (const store of stores) {
    assert.deepEqual(await store.lookupKey(name, ["contended"]), winner);
    assert.deepEqual(await store.lookupId(winner.actorId), winner);
  }
  const loser = metas.find((m) => m.actorId !== winner.actorId)!;
  assert.equal(await stores[0].lookupId(loser.actorId), undefined, "a loser leaves no record");
}

async function rejectsFenced(call: Promise<unknown>) {
  await assert.rejects(call, (err: { code?: unknown }) => {
    assert.equal(err.code, "fenced", `expected a fenced error, got ${String(err)}`);
    return true;
  });
}

async function settlesWithin(call: Promise<unknown>, ms: number) {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), ms)));
  try {
    const outcome = await Promise.race([call.then(() => "settled", () => "settled"), timeout]);
    assert.equal(outcome, "settled", `a call on a closed store did not settle within ${ms} ms`);
  } finally {
    clearTimeout(timer);
  }
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}
