import { spawn } from "node:child_process";
import * as path from "node:path";

/**
 * Runs `fixtures/<script>` with `mode` in a fresh node process, with the packages in `hide` made
 * unresolvable (fixtures/hide-drivers.cjs), and parses the JSON report it prints.
 */
export function runProbe<Report>(script: string, mode: string, hide: string[] = []): Promise<Report> {
  const child = spawn(
    process.execPath,
    ["-r", path.join(__dirname, "..", "fixtures", "hide-drivers.cjs"), "--import", "tsx", path.join(__dirname, "..", "fixtures", script), mode],
    { cwd: path.join(__dirname, "..", ".."), env: { ...process.env, HIDE_MODULES: hide.join(",") }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => (stdout += chunk));
  child.stderr.on("data", (chunk) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => {
      if (code !== 0) reject(new Error(`${script} exited with ${code}: ${stderr}`));
      else resolve(JSON.parse(stdout));
    });
  });
}
