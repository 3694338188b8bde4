import { admits, epochOf, fencedError } from "./fencing";
import { keyId, type ActorMeta, type StateStore } from "./types";

/** Keeps everything in this process; state is held as JSON text so callers never share objects. */
export function memoryStore(): StateStore {
  const byKey = new Map<string, ActorMeta>();
  const byId = new Map<string, ActorMeta>();
  const states = new Map<string, string>();
  const epochs = new Map<string, number>();
  /** Checks and records `epoch` in one synchronous step, so no other call can interleave. */
  const claim = (actorId: string, epoch: number | undefined) => {
    if (epoch === undefined) return;
    const highest = epochs.get(actorId);
    if (!admits(highest, epoch)) throw fencedError(actorId, epoch, highest);
    epochs.set(actorId, epoch);
  };
  // JSON copies, exactly what a serializing store such as fileStore hands back: callers never share
  // the key or input objects, and no object of another realm (structuredClone under Jest) slips in.
  const copy = (meta: ActorMeta | undefined): ActorMeta | undefined => (meta ? JSON.parse(JSON.stringify(meta)) : undefined);

  return {
    async createIfAbsent(meta) {
      const id = keyId(meta.name, meta.key);
      const existing = byKey.get(id);
      if (existing) return { created: false, meta: copy(existing)! };
      const stored = copy(meta)!;
      byKey.set(id, stored);
      byId.set(meta.actorId, stored);
      return { created: true, meta: copy(stored)! };
    },
    async lookupKey(name, key) {
      return copy(byKey.get(keyId(name, key)));
    },
    async lookupId(actorId) {
      return copy(byId.get(actorId));
    },
    async load(actorId, options) {
      claim(actorId, epochOf(options));
      return states.get(actorId);
    },
    async save(actorId, state, options) {
      claim(actorId, epochOf(options));
      states.set(actorId, state);
    },
    async delete(actorId) {
      const meta = byId.get(actorId);
      if (meta) byKey.delete(keyId(meta.name, meta.key));
      byId.delete(actorId);
      states.delete(actorId);
      epochs.delete(actorId);
    },
  };
}
