import { log, type Logger } from "../log";
import type { StateStore } from "./types";

/** What a registry tells a store it was given: where to log, and where to count connection failures. */
export interface StoreObserver {
  log: Logger;
  connectionFailed?(): void;
}

const OBSERVE = Symbol.for("express-actors.observeStore");
type Observable = StateStore & { [OBSERVE]?: (observer: StoreObserver) => void };

/** A store's own view of its observer: the default logger until a registry sets one. */
export function storeObserver(): { current: StoreObserver } {
  return { current: { log } };
}

/** Lets setup() reach `sink` (internal: not part of the StateStore interface). */
export function observedBy<S extends StateStore>(store: S, sink: { current: StoreObserver }): S {
  (store as Observable)[OBSERVE] = (observer) => (sink.current = observer);
  return store;
}

/** Called by setup(); a store of the user's own simply has nothing to tell. */
export function observeStore(store: StateStore, observer: StoreObserver) {
  (store as Observable)[OBSERVE]?.(observer);
}
