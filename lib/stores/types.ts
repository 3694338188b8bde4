/** What the registry knows about an actor apart from its state. */
export interface ActorMeta {
  actorId: string;
  name: string;
  key: string[];
  /** The input given at creation, kept so createState can run again if the first save never happened. */
  input?: unknown;
  createdAt: number;
}

/** The fencing token of a load or save (SPEC §8). */
export interface EpochOptions {
  /**
   * A positive integer. The store keeps, per actor, the highest epoch it has seen; a call with a
   * lower one rejects with an error whose `code` is "fenced" and writes nothing. Without an epoch
   * nothing is checked and the stored epoch is unchanged.
   */
  epoch?: number;
}

/**
 * Where actors live between activations. `state` is the actor's state as JSON text.
 * Implementations must make `createIfAbsent` atomic per (name, key): of two concurrent calls,
 * exactly one creates and the other gets the winner's record. A store may ignore the epoch
 * options when it only ever serves one process; `express-actors/testing` checks the whole contract.
 */
export interface StateStore {
  createIfAbsent(meta: ActorMeta): Promise<{ created: boolean; meta: ActorMeta }>;
  lookupKey(name: string, key: string[]): Promise<ActorMeta | undefined>;
  lookupId(actorId: string): Promise<ActorMeta | undefined>;
  /** The last saved state, or undefined when the actor was never saved. */
  load(actorId: string, options?: EpochOptions): Promise<string | undefined>;
  /** Resolves once the state is durable for this store. */
  save(actorId: string, state: string, options?: EpochOptions): Promise<void>;
  delete(actorId: string): Promise<void>;
  close?(): Promise<void>;
}

/** The identity of a (name, key) pair, usable as a map key or hashed into a file name. */
export function keyId(name: string, key: string[]): string {
  return JSON.stringify([name, ...key]);
}
