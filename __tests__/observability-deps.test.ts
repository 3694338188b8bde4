import { runProbe } from "./helpers/module-probe";

// prom-client and @opentelemetry/api are optional peer dependencies, pino only an example: an app
// that configures none of them loads none of them, and one that asks for a missing one is told.

interface Report {
  afterImport: string[];
  afterUse?: string[];
  errors: Record<string, string>;
}

const probe = (mode: "plain" | "missing", hide: string[] = []) => runProbe<Report>("telemetry-probe.ts", mode, hide);

jest.setTimeout(30_000);

it('import "express-actors" and a registry without logger, metrics or tracing load none of their packages', async () => {
  const report = await probe("plain");
  expect(report.afterImport).toEqual([]);
  expect(report.afterUse).toEqual([]);
});

it("asking for metrics or tracing without the package fails at setup, naming what to install", async () => {
  const report = await probe("missing", ["prom-client", "@opentelemetry/api"]);
  expect(report.errors).toEqual({
    metrics: 'setup({ metrics }) needs the "prom-client" package, which is not installed: npm install prom-client',
    tracing: 'setup({ tracing }) needs the "@opentelemetry/api" package, which is not installed: npm install @opentelemetry/api',
  });
});
