import { promises as fs } from "node:fs";

const LOCK_TIMEOUT_MS = 10_000;
const RETRY_MS = 5;

/** The tail of each lock file's queue in this process, so one process never races itself on disk. */
const queues = new Map<string, Promise<void>>();

/**
 * Runs `fn` while holding `file` as an exclusive lock: queued behind other holders in this process,
 * and created with O_EXCL against other processes. A lock left by a process that died is taken over.
 */
export async function withFileLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const previous = queues.get(file);
  let done!: () => void;
  const tail = new Promise<void>((resolve) => (done = resolve));
  queues.set(file, tail);
  try {
    await previous;
    await acquire(file);
    try {
      return await fn();
    } finally {
      await fs.rm(file, { force: true });
    }
  } finally {
    done();
    if (queues.get(file) === tail) queues.delete(file);
  }
}

async function acquire(file: string) {
  const deadline = Date.now() + LOCK_TIMEOUT_MS;
  for (;;) {
    try {
      await fs.writeFile(file, String(process.pid), { flag: "wx" });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const owner = Number(await fs.readFile(file, "utf8").catch(() => ""));
    // This process queues its own holders, so a lock naming it was left behind by a failed release.
    if (owner && (owner === process.pid || !alive(owner))) {
      await fs.rm(file, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`fileStore: ${file} is still locked by process ${owner || "(unknown)"}`);
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
