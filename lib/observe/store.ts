import type { StateStore } from "../stores/types";
import type { StoreOperation } from "./metrics";
import type { Observer } from "./observer";

/** The registry's view of `store` when metrics or tracing are on: every call counted, saves timed. */
export function observedStore(store: StateStore, observer: Observer): StateStore {
  const failed = (operation: StoreOperation) => (err: unknown) => {
    observer.storeFailed(operation, err);
    throw err;
  };
  return {
    createIfAbsent: (meta) => store.createIfAbsent(meta).catch(failed("create")),
    lookupKey: (name, key) => store.lookupKey(name, key).catch(failed("lookup")),
    lookupId: (actorId) => store.lookupId(actorId).catch(failed("lookup")),
    load: (actorId, options) => store.load(actorId, options).catch(failed("load")),
    save: (actorId, state, options) => observer.save(actorId, state, () => store.save(actorId, state, options)),
    delete: (actorId) => store.delete(actorId).catch(failed("delete")),
    close: store.close && (() => store.close!().catch(failed("close"))),
  };
}
