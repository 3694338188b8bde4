import { performance } from "node:perf_hooks";
import type { Owner } from "../cluster/types";
import { keyId, type ActorMeta } from "../stores/types";
import type { ParsedQuery } from "./query";

interface Known {
  meta: ActorMeta;
  owner: Owner;
}

/** Enough for every actor a busy edge forwards to; past it the oldest are asked about again. */
const MAX_KNOWN = 10_000;

/**
 * An edge's memory of the actors other nodes own (SPEC §9): the record and the owner a claim
 * found, kept no longer than the lease it saw must last. Requests for such an actor skip the
 * store lookup and the Redis round trip. An owner that let go early (sleep, shutdown, a move)
 * refuses the hop unserved: the edge then forgets it and asks again.
 */
export class KnownOwners {
  private readonly byId = new Map<string, Known>();
  private readonly byKey = new Map<string, string>();

  /** The actor and owner of a get / getOrCreate / getForId query, while still sure; never for create. */
  find(query: ParsedQuery): Known | undefined {
    if (query.kind === "create") return undefined;
    const id = query.kind === "getForId" ? query.actorId : this.byKey.get(query.keyId);
    const known = id === undefined ? undefined : this.byId.get(id);
    if (!known || known.meta.name !== query.name) return undefined;
    if (!(performance.now() < known.owner.until!)) {
      this.forget(known.meta.actorId);
      return undefined;
    }
    return known;
  }

  remember(meta: ActorMeta, owner: Owner) {
    if (owner.until === undefined || owner.url === undefined) return;
    const id = meta.actorId;
    // Deleted first, so that the Map's order stays the order of last confirmation.
    this.byId.delete(id);
    this.byId.set(id, { meta, owner });
    this.byKey.set(keyId(meta.name, meta.key), id);
    if (this.byId.size > MAX_KNOWN) this.forget(this.byId.keys().next().value!);
  }

  /** Forgets the owner of `actorId`; with `owner`, only if that is still the one remembered. */
  forget(actorId: string, owner?: Owner) {
    const known = this.byId.get(actorId);
    if (!known || (owner && known.owner !== owner)) return;
    this.byId.delete(actorId);
    const key = keyId(known.meta.name, known.meta.key);
    if (this.byKey.get(key) === actorId) this.byKey.delete(key);
  }
}
