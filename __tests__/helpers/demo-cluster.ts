import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import { createInterface } from "node:readline";
import { REDIS_URL, freePort } from "./services";

/** `npm run demo:cluster` (demo/cluster.ts) as a user runs it, on free ports, with its output kept line by line. */
export interface DemoClusterRun {
  ports: number[];
  process: ChildProcess;
  /** Every line the launcher printed (its nodes' lines start with `[port]`), stdout and stderr. */
  lines: string[];
  output(): string;
  /** The first line from index `from` on that matches; waits for it (default 30 s). */
  waitFor(pattern: RegExp, from?: number, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** The pid the node on `port` printed last (a restarted node prints its new one). */
  pid(port: number): number;
  /** A line typed into the launcher's terminal: `restart 3001`, `kill 3001`, `start 3001`, `nodes`. */
  send(command: string): void;
  /** SIGTERM to the launcher; resolves with its exit code. */
  stop(): Promise<number | null>;
}

export async function launchDemoCluster(options: { databaseUrl: string; prefix: string }): Promise<DemoClusterRun> {
  const ports = [await freePort(), await freePort(), await freePort()];
  const launcher = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "..", "..", "demo", "cluster.ts")], {
    env: {
      ...process.env,
      DEMO_CLUSTER_PORTS: ports.join(","),
      DATABASE_URL: options.databaseUrl,
      REDIS_URL,
      DEMO_CLUSTER_PREFIX: options.prefix,
      EXPRESS_ACTORS_LOG: "warn",
    },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  for (const stream of [launcher.stdout!, launcher.stderr!]) {
    createInterface({ input: stream }).on("line", (line) => {
      lines.push(line);
      for (const wake of waiters) wake();
    });
  }
  const exited = new Promise<number | null>((resolve) => launcher.once("exit", (code) => resolve(code)));
  const output = () => lines.join("\n");

  const waitFor = (pattern: RegExp, from = 0, timeoutMs = 30_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        for (let i = from; i < lines.length; i++) {
          const match = pattern.exec(lines[i]);
          if (match) return done(() => resolve(match));
        }
        if (launcher.exitCode !== null || launcher.signalCode !== null) {
          done(() => reject(new Error(`demo:cluster exited before printing ${pattern}:\n${output()}`)));
        }
      };
      const timer = setTimeout(() => done(() => reject(new Error(`no line matched ${pattern} within ${timeoutMs} ms:\n${output()}`))), timeoutMs);
      const done = (settle: () => void) => {
        clearTimeout(timer);
        waiters.delete(check);
        launcher.off("exit", check);
        settle();
      };
      waiters.add(check);
      launcher.on("exit", check);
      check();
    });

  try {
    await waitFor(/nodes ready/, 0, 90_000);
  } catch (err) {
    launcher.kill("SIGTERM"); // stops the nodes it started
    await exited;
    throw err;
  }
  return {
    ports,
    process: launcher,
    lines,
    output,
    waitFor,
    pid(port) {
      const pattern = new RegExp(`^\\[${port}\\] cluster node on .* \\(pid (\\d+)\\)`);
      const pids = lines.map((line) => pattern.exec(line)?.[1]).filter((pid) => pid !== undefined);
      if (pids.length === 0) throw new Error(`the node on ${port} printed no pid:\n${output()}`);
      return Number(pids[pids.length - 1]);
    },
    send(command) {
      launcher.stdin!.write(command + "\n");
    },
    stop() {
      if (launcher.exitCode === null && launcher.signalCode === null) launcher.kill("SIGTERM");
      return exited;
    },
  };
}
