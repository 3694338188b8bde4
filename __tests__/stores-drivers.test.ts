import { runProbe } from "./helpers/module-probe";

// The drivers are optional peer dependencies: the main entry never loads one, a store loads its own
// when it is built, and a missing one is named with the command that installs it.

interface Report {
  afterImport: string[];
  afterConstruct?: string[];
  errors: Record<string, string>;
}

const probe = (mode: "main" | "stores", hide: string[] = []) => runProbe<Report>("driver-probe.ts", mode, hide);

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
