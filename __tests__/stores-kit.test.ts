import { spawn } from "node:child_process";
import * as path from "node:path";
import { memoryStore, type StateStore } from "express-actors";
import { testStore, type StoreFactory } from "express-actors/testing";

// The conformance kit itself: registered with a describe/test of our own, it must pass on a correct
// store and fail, in the right tests, on stores broken in the ways the contract forbids.

jest.setTimeout(60_000);

/** Registers the kit with collecting describe/test, runs every test, and returns the failed titles. */
async function failuresOf(makeStore: StoreFactory): Promise<string[]> {
  const tests: Array<{ title: string; fn: () => Promise<void> }> = [];
  const trail: string[] = [];
  testStore("store", makeStore, {
    describe: (name, fn) => {
      trail.push(name);
      fn();
      trail.pop();
    },
    test: (name, fn) => {
      tests.push({ title: [...trail, name].join(" > "), fn });
    },
  });
  expect(tests.length).toBeGreaterThanOrEqual(15);
  const failed: string[] = [];
  for (const { title, fn } of tests) await fn().catch(() => failed.push(title));
  return failed;
}

/** A view of one shared memoryStore with `change` applied on top. */
const broken = (change: (inner: StateStore) => Partial<StateStore>): StoreFactory => {
  const shared = memoryStore();
  return () => ({ ...shared, ...change(shared) });
};

describe("testStore", () => {
  it("passes on a correct store", async () => {
    const shared = memoryStore();
    expect(await failuresOf(() => ({ ...shared }))).toEqual([]);
  });

  it("fails a store that ignores epochs, in the fencing tests only", async () => {
    const failed = await failuresOf(
      broken((inner) => ({ load: (id) => inner.load(id), save: (id, state) => inner.save(id, state) })),
    );
    expect(failed.length).toBeGreaterThanOrEqual(5);
    expect(failed.every((title) => title.includes("fencing") || title.includes("reads back"))).toBe(true);
  });

  it("fails a create-if-absent that checks and writes in two steps", async () => {
    const failed = await failuresOf(
      broken((inner) => ({
        async createIfAbsent(meta) {
          const existing = await inner.lookupKey(meta.name, meta.key);
          if (existing) return { created: false, meta: existing };
          await new Promise((resolve) => setImmediate(resolve));
          // Overwrites like a blind upsert: every racer believes it created the actor.
          await inner.delete((await inner.lookupKey(meta.name, meta.key))?.actorId ?? meta.actorId);
          return inner.createIfAbsent(meta);
        },
      })),
    );
    expect(failed).toEqual(expect.arrayContaining([expect.stringContaining("100 concurrent callers on one instance")]));
  });

  it("fails a store whose new instance forgets what another wrote", async () => {
    const failed = await failuresOf(() => memoryStore());
    expect(failed).toEqual(
      expect.arrayContaining([
        expect.stringContaining("two instances over one database"),
        expect.stringContaining("a new instance reads back"),
      ]),
    );
  });

  it("fails a store that does not return state byte for byte", async () => {
    const failed = await failuresOf(
      broken((inner) => ({
        save: (id, state, options) => inner.save(id, state.length > 1024 * 1024 ? state.slice(0, 1024 * 1024) : state, options),
      })),
    );
    expect(failed).toEqual([expect.stringContaining("returns state exactly as saved")]);
  });

  it("fails a store whose delete leaves the key record behind", async () => {
    const failed = await failuresOf(broken(() => ({ delete: async () => {} })));
    expect(failed).toEqual([expect.stringContaining("delete removes the record")]);
  });

  it("runs under node:test, with its describe and test", async () => {
    const file = path.join(__dirname, "fixtures", "kit.node-test.ts");
    const child = spawn(process.execPath, ["--import", "tsx", "--test", "--test-reporter=tap", file], {
      cwd: path.join(__dirname, ".."),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect({ code, tail: output.slice(-1500) }).toEqual({ code: 0, tail: expect.stringContaining("# fail 0") });
    // Both stores' suites ran, test by test: a kit that registered nothing would pass with 0.
    expect(Number(/# pass (\d+)/.exec(output)?.[1])).toBeGreaterThanOrEqual(30);
    expect(output).toContain("memoryStore");
    expect(output).toContain("sqliteStore");
  });
});
