import type { EpochOptions } from "./types";

/** The epoch of a load or save, validated: undefined when none was given. */
export function epochOf(options: EpochOptions | undefined): number | undefined {
  const epoch = options?.epoch;
  if (epoch === undefined) return undefined;
  if (typeof epoch !== "number" || !Number.isSafeInteger(epoch) || epoch < 1) {
    const shown = typeof epoch === "number" ? String(epoch) : typeof epoch === "string" ? JSON.stringify(epoch) : typeof epoch;
    throw new TypeError(`epoch must be a positive integer, got ${shown}`);
  }
  return epoch;
}

/** True when `epoch` may proceed over the highest epoch stored so far. */
export function admits(stored: number | undefined, epoch: number): boolean {
  return stored === undefined || epoch >= stored;
}

/** The rejection of a stale writer: a newer owner has claimed the actor with a higher epoch. */
export function fencedError(actorId: string, epoch: number, highest?: number): Error & { code: "fenced" } {
  const newer = highest === undefined ? "a higher epoch" : `epoch ${highest}`;
  return Object.assign(new Error(`actor ${actorId}: epoch ${epoch} is fenced off, the store has seen ${newer}`), {
    code: "fenced" as const,
  });
}
