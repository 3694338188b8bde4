import { spawn } from "node:child_process";
import * as path from "node:path";

// prom-client and @opentelemetry/api are optional peer dependencies, pino only an example: an app
// that configures none of them loads none of them, and one that asks for a missing one is told.

interface Report {
  afterImport: string[];
  afterUse?: string[];
  errors: Record<string, string>;
}

function probe(mode: "plain" | "missing", hide: string[] = []): Promise<Report> {
  const root = path.join(__dirname, "..");
  const child = spawn(
    process.execPath,
    ["-r", path.join(__dirname, "fixtures", "hide-drivers.cjs"), "--import", "tsx", path.join(__dirname, "fixtures", "telemetry-probe.ts"), mode],
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
