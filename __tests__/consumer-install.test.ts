import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

// The package as a user gets it: `npm pack`, then a fresh app installs the tarball the way the
// README says, with no overrides, so express-ws brings its own ws 7. Every install comes from the
// npm registry (or npm's cache), as on a user's machine.

const run = promisify(execFile);
const repo = join(__dirname, "..");
const fixtures = join(__dirname, "fixtures", "consumer");
const work = mkdtempSync(join(tmpdir(), "express-actors-consumer-"));
let tarball: string;

jest.setTimeout(300_000);

async function sh(cwd: string, command: string, args: string[]) {
  try {
    return await run(command, args, { cwd, env: { ...process.env, npm_config_update_notifier: "false" }, maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    const { stdout, stderr } = err as { stdout?: string; stderr?: string };
    throw new Error(`${command} ${args.join(" ")} failed in ${cwd}:\n${stdout ?? ""}\n${stderr ?? ""}`);
  }
}

/** A fresh app folder with `packages` installed next to the packed tarball. */
async function freshApp(name: string, packages: string[], files: string[]): Promise<string> {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name, version: "1.0.0", private: true }));
  await sh(dir, "npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", ...packages, tarball]);
  for (const file of files) copyFileSync(join(fixtures, file), join(dir, file));
  return dir;
}

beforeAll(async () => {
  const { stdout } = await sh(repo, "npm", ["pack", "--silent", "--pack-destination", work]);
  tarball = join(work, stdout.trim().split("\n").pop()!);
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.each([
  { label: "express 4", express: "express@4" },
  { label: "express 5", express: "express@5" },
])("a fresh install with $label and express-ws, as the README says", ({ express }) => {
  let dir: string;
  beforeAll(async () => {
    dir = await freshApp(express.replace(/\W/g, "-"), [express, "express-ws"], ["smoke.js"]);
  });

  it("gives express-ws its own ws 7, the version users run", () => {
    const expressWsDir = require.resolve("express-ws/package.json", { paths: [dir] }).replace(/package\.json$/, "");
    const ws = JSON.parse(readFileSync(require.resolve("ws/package.json", { paths: [expressWsDir] }), "utf8"));
    expect(ws.version).toMatch(/^7\./);
  });

  it("serves HTTP, WebSocket echo (text, binary, early frames), close codes, refusals and the server client without a crash", async () => {
    const { stdout, stderr } = await sh(dir, "node", ["smoke.js"]);
    expect(stdout.trim().split("\n").pop()).toBe("SMOKE OK");
    expect(stderr).toBe("");
  });

  it("loads both entry points as ES modules", async () => {
    const source = 'import { actor, setup } from "express-actors"; import { createClient } from "express-actors/client"; console.log(typeof actor, typeof setup, typeof createClient);';
    const { stdout } = await sh(dir, "node", ["--input-type=module", "-e", source]);
    expect(stdout.trim()).toBe("function function function");
  });
});

describe("an older express-ws (4, which brings ws 5)", () => {
  it("says once at startup that ws 7 or 8 is what is tested, and still serves", async () => {
    const dir = await freshApp("express-ws-4", ["express@4", "express-ws@4"], ["smoke.js"]);
    const { stdout, stderr } = await sh(dir, "node", ["smoke.js"]);
    expect(stdout.trim().split("\n").pop()).toBe("SMOKE OK");
    const warnings = stderr.split("\n").filter((line) => line.includes("express-ws loads ws 5.x"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("Install express-ws@5");
  });
});

describe("the shipped types in a strict consumer without skipLibCheck", () => {
  const resolutions = [
    { moduleResolution: "node10", module: "commonjs" },
    { moduleResolution: "node16", module: "node16" },
    { moduleResolution: "bundler", module: "esnext" },
  ];
  const tsconfig = (moduleResolution: string, module: string, files: string[]) =>
    JSON.stringify({
      compilerOptions: { target: "ES2022", module, moduleResolution, strict: true, noEmit: true, skipLibCheck: false, esModuleInterop: true, types: ["node"] },
      files,
    });

  describe("with only typescript and @types/node installed (no @types/ws, no @types/express)", () => {
    let dir: string;
    beforeAll(async () => {
      dir = await freshApp("types-bare", ["typescript@5", "@types/node@20"], ["types-bare.ts"]);
    });

    it.each(resolutions)("compiles under moduleResolution $moduleResolution", async ({ moduleResolution, module }) => {
      writeFileSync(join(dir, `tsconfig.${moduleResolution}.json`), tsconfig(moduleResolution, module, ["types-bare.ts"]));
      await sh(dir, "npx", ["tsc", "-p", `tsconfig.${moduleResolution}.json`]);
    });
  });

  describe("in a typed Express app with express-ws", () => {
    let dir: string;
    beforeAll(async () => {
      dir = await freshApp(
        "types-express",
        ["typescript@5", "@types/node@20", "express@4", "@types/express@4", "express-ws", "@types/express-ws"],
        ["types-bare.ts", "types-express.ts"],
      );
    });

    it.each(resolutions)("compiles under moduleResolution $moduleResolution", async ({ moduleResolution, module }) => {
      writeFileSync(join(dir, `tsconfig.${moduleResolution}.json`), tsconfig(moduleResolution, module, ["types-express.ts"]));
      await sh(dir, "npx", ["tsc", "-p", `tsconfig.${moduleResolution}.json`]);
    });
  });
});
