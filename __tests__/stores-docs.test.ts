import fs from "node:fs";
import path from "node:path";
import ts from "typescript";
import type { StateStore } from "express-actors";
import { testStore } from "express-actors/testing";

// docs/durable-stores.md's example store, as written: it must type-check in strict mode and pass the
// conformance kit over a versioned key-value database with real interleaving.

const ROOT = path.resolve(__dirname, "..");
const page = fs.readFileSync(path.join(ROOT, "docs", "durable-stores.md"), "utf8");
const example = [...page.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]).find((code) => code.includes("export function versionedKvStore"));

const dir = fs.mkdtempSync(path.join(ROOT, ".stores-docs-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const file = path.join(dir, "versioned-kv-store.ts");
fs.writeFileSync(file, example ?? "");

test("the page has the example store", () => {
  expect(example).toBeDefined();
});

test("the example store type-checks as a file of a user's project", () => {
  const program = ts.createProgram([file], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    baseUrl: ROOT,
    paths: { "express-actors": ["lib/index.ts"] },
    types: ["node"],
    strict: true,
    skipLibCheck: true,
    noUnusedLocals: true,
    noEmit: true,
  });
  const report = ts.formatDiagnostics(ts.getPreEmitDiagnostics(program), {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => ROOT,
    getNewLine: () => "\n",
  });
  expect(report).toBe("");
});

/** An in-memory VersionedKv whose every call yields to the event loop, so concurrent callers interleave. */
function versionedKv() {
  const data = new Map<string, { value: string; version: number }>();
  const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
  return {
    async get(key: string) {
      await turn();
      const found = data.get(key);
      return found && { ...found };
    },
    async put(key: string, value: string, version: number | undefined) {
      await turn();
      if (data.get(key)?.version !== version) return false;
      data.set(key, { value, version: (version ?? 0) + 1 });
      return true;
    },
    async del(key: string) {
      await turn();
      data.delete(key);
    },
  };
}

const { versionedKvStore } = require(file) as { versionedKvStore: (kv: ReturnType<typeof versionedKv>) => StateStore };
const kv = versionedKv();
testStore("docs/durable-stores.md: versionedKvStore", () => versionedKvStore(kv));
