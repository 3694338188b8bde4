// Bundles RivetKit's own client (`rivetkit/client` from the `rivetkit` devDependency, 2.0.33) for
// browsers: the demo page's "official RivetKit client" panel imports it. Demo only, never shipped.
// `node scripts/build-rivetkit-browser.mjs <outfile>`; demo/server.ts runs it on the first request.
import { rename, writeFile, mkdir } from "node:fs/promises";
import * as path from "node:path";
import { build } from "esbuild";

const outfile = process.argv[2];
if (!outfile) throw new Error("usage: node scripts/build-rivetkit-browser.mjs <outfile>");

const result = await build({
  entryPoints: ["rivetkit/client"],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true, // about 600 KB, 140 KB gzipped: zod, cbor-x and hono come along
  legalComments: "none",
  logLevel: "warning",
  write: false,
});

// Written under another name, then renamed: several demos (parallel test workers) may build at once.
await mkdir(path.dirname(outfile), { recursive: true });
const partial = `${outfile}.${process.pid}.tmp`;
await writeFile(partial, result.outputFiles[0].contents);
await rename(partial, outfile);
