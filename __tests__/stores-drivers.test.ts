import { spawn } from "node:child_process";
import * as path from "node:path";

// The drivers are optional peer dependencies: the main entry never loads one, a store loads its own
// when it is built, and a missing one is named with the command that installs it.

interface Report {
  afterImport: string[];
  afterConstruct?: string[];
  errors: Record<string, string>;
}

/** Runs fixtures/driver-probe.ts in a fresh node, with `hide` made unresolvable. */
function probe(mode: "main" | "stores", hide: string[] = []): Promise<Report> {
  const root = path.join(__dirname, "..");
  const child = spawn(
    process.execPath,
    ["-r", path.join(__dirname, "fixtures", "hide-drivers.cjs"), "--import", "tsx", path.join(__dirname, "fixtures", "driver-probe.ts"), mode],
    { cwd: root, env: { ...process.env, HIDE_MODULES: hide.join(",") }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => (stdout += chunk));
  child.stderr.on("data", (chunk) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => {
      if (code !== 0) reject(new Error(`probe exited with ${code}: ${stderr}`));
      else resolve(JSON.parse(stdout));
    });
  });
}

jest.setTimeout(30_000);

it('import "express-actors" loads no database driver', async () => {
  expect((await probe("main")).afterImport).toEqual([]);
});

it("a store's module loads its driver only when the store is built", async () => {
  const report = await probe("stores");
  expect(report.afterImport).toEqual([]);
  expect(report.errors).toEqual({});
  expect(report.afterConstruct).toEqual(["better-sqlite3", "pg", "ioredis"]);
});

it("a missing driver fails the store's construction, naming the package to install", async () => {
  const report = await probe("stores", ["better-sqlite3", "pg", "ioredis"]);
  expect(report.errors).toEqual({
    sqlite: 'sqliteStore needs the "better-sqlite3" package, which is not installed: npm install better-sqlite3',
    postgres: 'postgresStore needs the "pg" package, which is not installed: npm install pg',
    redis: 'redisStore needs the "ioredis" package, which is not installed: npm install ioredis',
  });
  expect(report.afterConstruct).toEqual([]);
});
