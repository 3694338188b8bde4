// Self time per function and per area from a V8 .cpuprofile (node --cpu-prof).
// Usage: tsx bench/profile-summary.ts <file.cpuprofile> [top]
import { readFileSync } from "node:fs";
import * as path from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const ROOT = path.resolve(__dirname, "..");

/** The code a URL belongs to, coarse enough to tell the library's cost from the platform's. */
function areaOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith("(") ? functionName : "native (V8 builtins, C++)";
  const file = url.replace(/^file:\/\//, "");
  if (file.startsWith(path.join(ROOT, "lib") + "/")) return "express-actors lib/";
  if (file.startsWith(path.join(ROOT, "bench") + "/")) return "bench/";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
  // tsx compiling and loading modules: startup, not per-request work.
  if (url.startsWith("node:internal/modules") || pkg?.[1] === "tsx") return "module loading (startup)";
  if (pkg) return pkg[1];
  if (url.startsWith("node:internal/deps/undici")) return "undici (Request, Response, Headers)";
  if (url.startsWith("node:internal/webstreams")) return "web streams";
  if (url.startsWith("node:")) return "node core";
  return url;
}

function shortUrl(url: string): string {
  return url.replace(/^file:\/\//, "").replace(ROOT + "/", "").replace(/^.*node_modules\//, "");
}

export function summarizeProfile(file: string, top = 15): string {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const perFunction = new Map<string, number>();
  const perArea = new Map<string, number>();
  let total = 0;
  // A sample lasts until the next one (timeDeltas[i + 1] µs), as in Chrome DevTools.
  for (let i = 0; i < profile.samples.length - 1; i++) {
    const { functionName, url, lineNumber } = byId.get(profile.samples[i])!.callFrame;
    if (functionName === "(idle)") continue;
    const us = profile.timeDeltas[i + 1];
    const name = `${functionName || "(anonymous)"} ${url ? `${shortUrl(url)}:${lineNumber + 1}` : ""}`.trim();
    perFunction.set(name, (perFunction.get(name) ?? 0) + us);
    const area = areaOf(url, functionName);
    perArea.set(area, (perArea.get(area) ?? 0) + us);
    total += us;
  }
  const table = (title: string, rows: Map<string, number>, limit: number) => [
    `| ${title} | self ms | % of busy |`,
    "|---|---:|---:|",
    ...[...rows]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([name, us]) => `| \`${name}\` | ${(us / 1000).toFixed(0)} | ${((100 * us) / total).toFixed(1)} |`),
  ];
  return [
    `Busy (non-idle) time: ${(total / 1000).toFixed(0)} ms`,
    "",
    ...table("area", perArea, 12),
    "",
    ...table(`top ${top} functions (self time)`, perFunction, top),
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
