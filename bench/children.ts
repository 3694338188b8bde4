// Child processes of the runner: started under tsx, pinned to SERVER_CPU when taskset exists,
// each wait bounded, and all of them killed when the runner exits for any reason.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import type { ChildMessage } from "./common";

const ROOT = path.resolve(__dirname, "..");
const SERVER_CPU = 0;
const LOAD_CPU = 1;

const hasTaskset = spawnSync("taskset", ["-V"], { stdio: "ignore" }).status === 0;
const live = new Set<ChildProcess>();

process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => process.exit(130));
}

/** Pins this process (every thread, -a) to the load generator's core; a description for the report. */
export function pinLoadGenerator(): string {
  if (!hasTaskset) return "no taskset: server and load generator are separate, unpinned processes";
  const pinned = spawnSync("taskset", ["-a", "-cp", String(LOAD_CPU), String(process.pid)], { stdio: "ignore" });
  if (pinned.status !== 0) return "taskset failed: server and load generator are separate, unpinned processes";
  return `server pinned to CPU ${SERVER_CPU}, load generator to CPU ${LOAD_CPU} (taskset)`;
}

type MessageOf<T extends ChildMessage["type"]> = Extract<ChildMessage, { type: T }>;

export class Child {
  private readonly process: ChildProcess;
  private readonly exited: Promise<number | null>;
  private readonly label: string;

  /** Runs `bench/<script> ...args` as `node <nodeArgs> --import tsx`, with an IPC channel. */
  constructor(script: string, args: string[] = [], nodeArgs: string[] = []) {
    this.label = [script, ...args].join(" ");
    const node = [...nodeArgs, "--import", "tsx", path.join(__dirname, script), ...args];
    const [command, argv] = hasTaskset
      ? ["taskset", ["-c", String(SERVER_CPU), process.execPath, ...node]]
      : [process.execPath, node];
    this.process = spawn(command, argv, {
      cwd: ROOT,
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      env: { ...process.env, TSX_TSCONFIG_PATH: path.join(ROOT, "bench", "tsconfig.json") },
    });
    live.add(this.process);
    this.exited = new Promise((resolve) => {
      this.process.once("exit", (code) => {
        live.delete(this.process);
        resolve(code);
      });
    });
  }

  /** The child's next message of `type`; rejects if it exits first or takes longer than `timeoutMs`. */
  message<T extends ChildMessage["type"]>(type: T, timeoutMs: number): Promise<MessageOf<T>> {
    return new Promise((resolve, reject) => {
      const settle = () => {
        clearTimeout(timer);
        this.process.off("message", onMessage);
      };
      const timer = setTimeout(() => {
        settle();
        this.process.kill("SIGKILL");
        reject(new Error(`${this.label}: no "${type}" message within ${timeoutMs} ms`));
      }, timeoutMs);
      const onMessage = (m: ChildMessage) => {
        if (m.type !== type) return;
        settle();
        resolve(m as MessageOf<T>);
      };
      this.process.on("message", onMessage);
      void this.exited.then((code) => {
        settle();
        reject(new Error(`${this.label}: exited with ${code} before sending "${type}"`));
      });
    });
  }

  /** CPU time (user + system, all threads) the child has used so far, in µs; server.ts answers it. */
  async cpuMicros(): Promise<number> {
    const reply = this.message("cpu", 5000);
    this.process.send("cpu");
    return (await reply).micros;
  }

  /** Heap used and RSS after a full GC (the child runs with --expose-gc); cluster-ws-node.ts answers it. */
  async heap(): Promise<{ heapUsed: number; rss: number }> {
    const reply = this.message("heap", 30_000);
    this.process.send("heap");
    return reply;
  }

  /** Closes the IPC channel (children exit on disconnect, so profiles get written), then kills if needed. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.process.connected) this.process.disconnect();
    const timer = setTimeout(() => this.process.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
