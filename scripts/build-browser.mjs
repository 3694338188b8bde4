// Builds the browser bundle of express-actors/client: ESM, no Node built-ins, no `ws`.
import { build } from "esbuild";

/** Browsers have their own WebSocket; the client's Node fallback to `ws` must not be bundled. */
const noWs = {
  name: "no-ws",
  setup(b) {
    b.onResolve({ filter: /^ws$/ }, () => ({ path: "ws", namespace: "no-ws" }));
    b.onLoad({ filter: /.*/, namespace: "no-ws" }, () => ({
      contents: 'export const WebSocket = undefined; throw new Error("express-actors: this browser has no WebSocket");',
      loader: "js",
    }));
  },
};

await build({
  entryPoints: ["lib/client/index.ts"],
  outfile: "dist/browser/client.js",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  sourcemap: true,
  legalComments: "none",
  plugins: [noWs],
  logLevel: "warning",
});
