// Self time per area and per function, and total time of the library's functions, from a V8
// .cpuprofile (node --cpu-prof).
// Usage: tsx bench/profile-summary.ts <file.cpuprofile> [top]
import { readFileSync } from "node:fs";
import * as path from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const ROOT = path.resolve(__dirname, "..");
// The bench runs the compiled dist/; tsx runs of lib/ count as the library too.
const LIB_DIRS = ["lib", "dist"].map((dir) => path.join(ROOT, dir) + "/");

/** The code a URL belongs to, coarse enough to tell the library's cost from the platform's. */
function areaOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith("(") ? functionName : "native (V8 builtins, C++)";
  const file = url.replace(/^file:\/\//, "");
  if (LIB_DIRS.some((dir) => file.startsWith(dir))) return "express-actors (lib/, built to dist/)";
  if (file.startsWith(path.join(ROOT, "bench") + "/")) return "bench/";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
  // tsx compiling and loading modules: startup, not per-request work.
  if (url.startsWith("node:internal/modules") || pkg?.[1] === "tsx" || pkg?.[1] === "esbuild") return "module loading (startup)";
  if (pkg) return pkg[1];
  if (url.startsWith("node:internal/deps/undici")) return "undici (Request, Response, Headers)";
  if (url.startsWith("node:internal/webstreams")) return "web streams";
  if (url.startsWith("node:")) return "node core";
  return url;
}

function shortUrl(url: string): string {
  return url.replace(/^file:\/\//, "").replace(ROOT + "/", "").replace(/^.*node_modules\//, "");
}

const ROOT_URL = "file://" + ROOT + "/";
const LIB_URLS = LIB_DIRS.map((dir) => "file://" + dir);

export function summarizeProfile(file: string, top = 15): string {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  // No line for our .ts files: tsx's output puts them all on one line.
  const nameOf = ({ functionName, url, lineNumber }: ProfileNode["callFrame"]) => {
    const where = !url ? "" : url.startsWith(ROOT_URL) && url.endsWith(".ts") ? shortUrl(url) : `${shortUrl(url)}:${lineNumber + 1}`;
    return `${functionName || "(anonymous)"} ${where}`.trim();
  };

  const perFunction = new Map<string, number>();
  const perArea = new Map<string, number>();
  const libTotal = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, us: number) => map.set(key, (map.get(key) ?? 0) + us);
  let total = 0;
  // A sample lasts until the next one (timeDeltas[i + 1] µs), as in Chrome DevTools.
  for (let i = 0; i < profile.samples.length - 1; i++) {
    const node = byId.get(profile.samples[i])!;
    const { functionName, url } = node.callFrame;
    if (functionName === "(idle)") continue;
    const us = profile.timeDeltas[i + 1];
    total += us;
    add(perFunction, nameOf(node.callFrame), us);
    add(perArea, areaOf(url, functionName), us);
    // Total time: each library function on the stack, once even when it recurses.
    const onStack = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parentOf.get(id)) {
      const frame = byId.get(id)!.callFrame;
      if (LIB_URLS.some((url) => frame.url.startsWith(url))) onStack.add(nameOf(frame));
    }
    for (const name of onStack) add(libTotal, name, us);
  }
  const table = (title: string, column: string, rows: Map<string, number>, limit: number) => [
    `| ${title} | ${column} ms | % of busy |`,
    "|---|---:|---:|",
    ...[...rows]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([name, us]) => `| \`${name}\` | ${(us / 1000).toFixed(0)} | ${((100 * us) / total).toFixed(1)} |`),
  ];
  return [
    `Busy (non-idle) time: ${(total / 1000).toFixed(0)} ms.`,
    "",
    ...table("area", "self", perArea, 12),
    "",
    ...table(`top ${top} functions`, "self", perFunction, top),
    "",
    ...table("library functions, including what they call", "total", libTotal, 10),
  ].join("\n");
}

if (require.main === module) {
  const [file, top] = process.argv.slice(2);
  if (!file) {
    console.error("usage: tsx bench/profile-summary.ts <file.cpuprofile> [top]");
    process.exit(2);
  }
  console.log(summarizeProfile(file, top ? Number(top) : undefined));
}
