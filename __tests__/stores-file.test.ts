import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { fileStore } from "express-actors";
import { delay, tempDir } from "./helpers/actor-harness";

// fileStore's fencing: the epoch lives in a file of its own, and a check-and-write holds a lock file
// against other processes on the same directory.

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDir("express-actors-fence-")));
afterEach(() => cleanup());

async function created() {
  const store = fileStore({ dir });
  const actorId = randomUUID();
  await store.createIfAbsent({ actorId, name: "fenced", key: ["k"], createdAt: Date.now() });
  return { store, actorId };
}

/** A process that is running (until killed) or, once awaited, one that has exited. */
function sleeper() {
  const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60_000)"], { stdio: "ignore" });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  return { pid: child.pid!, kill: async () => (child.kill("SIGKILL"), await exited) };
}

it("keeps the epoch on disk beside the state, which stays plain JSON", async () => {
  const { store, actorId } = await created();
  await store.save(actorId, '{"n":1}', { epoch: 7 });
  expect(await readFile(path.join(dir, "state", `${actorId}.json`), "utf8")).toBe('{"n":1}');
  expect(await readFile(path.join(dir, "epochs", actorId), "utf8")).toBe("7");
  await store.save(actorId, '{"n":2}');
  expect(await readFile(path.join(dir, "epochs", actorId), "utf8")).toBe("7");
  await store.delete(actorId);
  await expect(stat(path.join(dir, "epochs", actorId))).rejects.toMatchObject({ code: "ENOENT" });
});

it("takes over a lock left by a process that died", async () => {
  const { store, actorId } = await created();
  const dead = sleeper();
  await dead.kill();
  await mkdir(path.join(dir, "locks"), { recursive: true });
  await writeFile(path.join(dir, "locks", `${actorId}.lock`), String(dead.pid));
  await store.save(actorId, '"after the crash"', { epoch: 1 });
  expect(await store.load(actorId)).toBe('"after the crash"');
});

it("waits while another live process holds the actor's lock", async () => {
  const { store, actorId } = await created();
  const holder = sleeper();
  try {
    await mkdir(path.join(dir, "locks"), { recursive: true });
    const lock = path.join(dir, "locks", `${actorId}.lock`);
    await writeFile(lock, String(holder.pid));
    let done = false;
    const saving = store.save(actorId, '"second"', { epoch: 2 }).then(() => (done = true));
    await delay(200);
    expect(done).toBe(false);
    expect(await store.load(actorId)).toBeUndefined();
    await holder.kill();
    await saving;
    expect(await store.load(actorId)).toBe('"second"');
  } finally {
    await holder.kill();
  }
});
