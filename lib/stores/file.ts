import { createHash, randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { admits, epochOf, fencedError } from "./fencing";
import { withFileLock } from "./file-lock";
import { keyId, type ActorMeta, type StateStore } from "./types";

export interface FileStoreOptions {
  dir: string;
}

const SAFE_ID = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * One file per record under `dir`, each written crash-safely: temp file, fsync, rename (or link
 * for create-if-absent), then fsync of the directory so the new name itself is durable.
 * An actor's highest epoch has a file of its own, so saves without an epoch never touch it.
 */
export function fileStore(options: FileStoreOptions): StateStore {
  const root = path.resolve(options.dir);
  const dirs = { meta: path.join(root, "actors"), state: path.join(root, "state"), keys: path.join(root, "keys") };
  // Made only once an epoch is used: a store without fencing keeps its three directories.
  const fenceDirs = { epochs: path.join(root, "epochs"), locks: path.join(root, "locks") };
  const makeDirs = (list: string[]) => {
    let ready: Promise<void> | undefined;
    return () =>
      (ready ??= Promise.all(list.map((d) => fs.mkdir(d, { recursive: true }))).then(
        () => {},
        (err) => {
          // Not cached, so a later call tries again once the directory can be made.
          ready = undefined;
          throw err;
        },
      ));
  };
  const ensureDirs = makeDirs(Object.values(dirs));
  const ensureFenceDirs = makeDirs(Object.values(fenceDirs));

  const keyFile = (name: string, key: string[]) =>
    path.join(dirs.keys, createHash("sha256").update(keyId(name, key)).digest("hex") + ".json");

  async function readJson<T>(file: string): Promise<T | undefined> {
    try {
      return JSON.parse(await fs.readFile(file, "utf8")) as T;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  async function syncDir(dir: string) {
    const handle = await fs.open(dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  async function writeTemp(dir: string, text: string): Promise<string> {
    const tmp = path.join(dir, `.tmp-${process.pid}-${randomBytes(6).toString("hex")}`);
    const handle = await fs.open(tmp, "w");
    try {
      await handle.writeFile(text, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    return tmp;
  }

  async function writeAtomic(file: string, text: string) {
    const dir = path.dirname(file);
    const tmp = await writeTemp(dir, text);
    try {
      await fs.rename(tmp, file);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    await syncDir(dir);
  }

  /** Writes only if `file` does not exist yet; link() fails with EEXIST for the loser of a race. */
  async function writeExclusive(file: string, text: string): Promise<boolean> {
    const dir = path.dirname(file);
    const tmp = await writeTemp(dir, text);
    try {
      await fs.link(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw err;
    } finally {
      await fs.rm(tmp, { force: true });
    }
    await syncDir(dir);
    return true;
  }

  const metaFile = (actorId: string) => path.join(dirs.meta, actorId + ".json");
  const stateFile = (actorId: string) => path.join(dirs.state, actorId + ".json");
  const epochFile = (actorId: string) => path.join(fenceDirs.epochs, actorId);

  async function readState(actorId: string): Promise<string | undefined> {
    try {
      return await fs.readFile(stateFile(actorId), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  /** Checks `epoch` against the one on disk and records it if higher; the caller holds the actor's lock. */
  async function claim(actorId: string, epoch: number) {
    const highest = await readJson<number>(epochFile(actorId));
    if (highest !== undefined && !Number.isSafeInteger(highest)) throw new Error(`fileStore: corrupt epoch file for ${actorId}`);
    if (!admits(highest, epoch)) throw fencedError(actorId, epoch, highest);
    // Recorded before the state is written: a crash in between leaves a claim, never an unfenced state.
    if (highest === undefined || epoch > highest) await writeAtomic(epochFile(actorId), String(epoch));
  }

  async function fenced<T>(actorId: string, epoch: number, then: () => Promise<T>): Promise<T> {
    await ensureFenceDirs();
    return withFileLock(path.join(fenceDirs.locks, actorId + ".lock"), async () => {
      await claim(actorId, epoch);
      return then();
    });
  }

  const checkId = (actorId: string) => {
    if (!SAFE_ID.test(actorId)) throw new Error(`fileStore: invalid actor id ${JSON.stringify(actorId)}`);
  };

  return {
    async createIfAbsent(meta) {
      checkId(meta.actorId);
      await ensureDirs();
      const text = JSON.stringify(meta);
      // The id record goes first so a key record never points at a missing id.
      await writeAtomic(metaFile(meta.actorId), text);
      const file = keyFile(meta.name, meta.key);
      if (await writeExclusive(file, text)) return { created: true, meta };
      await fs.rm(metaFile(meta.actorId), { force: true });
      const existing = await readJson<ActorMeta>(file);
      if (!existing) throw new Error("fileStore: key record vanished during create");
      return { created: false, meta: existing };
    },
    async lookupKey(name, key) {
      await ensureDirs();
      return readJson<ActorMeta>(keyFile(name, key));
    },
    async lookupId(actorId) {
      if (!SAFE_ID.test(actorId)) return undefined;
      await ensureDirs();
      return readJson<ActorMeta>(metaFile(actorId));
    },
    async load(actorId, options) {
      const epoch = epochOf(options);
      checkId(actorId);
      await ensureDirs();
      return epoch === undefined ? readState(actorId) : fenced(actorId, epoch, () => readState(actorId));
    },
    async save(actorId, state, options) {
      const epoch = epochOf(options);
      checkId(actorId);
      await ensureDirs();
      const write = () => writeAtomic(stateFile(actorId), state);
      await (epoch === undefined ? write() : fenced(actorId, epoch, write));
    },
    async delete(actorId) {
      checkId(actorId);
      await ensureDirs();
      const meta = await readJson<ActorMeta>(metaFile(actorId));
      if (meta) await fs.rm(keyFile(meta.name, meta.key), { force: true });
      await fs.rm(stateFile(actorId), { force: true });
      await fs.rm(epochFile(actorId), { force: true });
      await fs.rm(metaFile(actorId), { force: true });
    },
  };
}
