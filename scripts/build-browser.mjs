// Builds the browser bundle of express-actors/client: ESM, no Node built-ins, no `ws`.
// `node scripts/build-browser.mjs [outfile]` (default dist/browser/client.js).
import { build } from "esbuild";

/**
 * Browsers have their own WebSocket: the client's Node default (default-websocket.ts, which loads
 * `ws`) is swapped for default-websocket.browser.ts, and anything else reaching for `ws` or a Node
 * built-in fails the build instead of shipping code that breaks in a page.
 */
const browserOnly = {
  name: "browser-only",
  setup(b) {
    b.onResolve({ filter: /\/default-websocket$/ }, (args) => ({ path: `${args.resolveDir}/default-websocket.browser.ts` }));
    b.onResolve({ filter: /^(ws|node:.*)$/ }, (args) => ({
      errors: [{ text: `the browser build must not import "${args.path}" (from ${args.importer})` }],
    }));
  },
};

await build({
  entryPoints: ["lib/client/index.ts"],
  outfile: process.argv[2] ?? "dist/browser/client.js",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  sourcemap: true,
  legalComments: "none",
  plugins: [browserOnly],
  logLevel: "warning",
});
