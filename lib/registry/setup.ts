import type { ActorDefinition } from "../actor/definition";
import { createServerClient } from "../client/server";
import type { Client } from "../client/core";
import { memoryStore } from "../stores/memory";
import type { StateStore } from "../stores/types";
import type { Cluster } from "../cluster/types";
import { RegistryCore } from "./core";
import { createTelemetry, type TelemetryOptions } from "../observe/telemetry";
import { observeStore } from "../stores/observed";
import { observedStore } from "../observe/store";

export interface SetupOptions<Use extends Record<string, ActorDefinition>> extends TelemetryOptions {
  use: Use;
  store?: StateStore;
  /** Several processes serving one set of actors (SPEC §9): `redisCluster()` from `express-actors/cluster/redis`. */
  cluster?: Cluster;
}

const cores = new WeakMap<object, RegistryCore>();

/** The set of actors an app hosts. Only these two methods are public; the rest is internal. */
export class Registry<Use extends Record<string, ActorDefinition> = Record<string, ActorDefinition>> {
  declare readonly __actors?: Use;

  constructor(options: SetupOptions<Use>) {
    if (!options || typeof options.use !== "object" || options.use === null) {
      throw new TypeError("setup(): `use` must map actor names to actor() definitions");
    }
    for (const [name, definition] of Object.entries(options.use)) {
      if (!definition || typeof definition.config !== "object") {
        throw new TypeError(`setup(): "${name}" is not an actor() definition`);
      }
    }
    if (options.cluster !== undefined && typeof options.cluster?.claim !== "function") {
      throw new TypeError("setup(): `cluster` must come from redisCluster() (express-actors/cluster/redis)");
    }
    const telemetry = createTelemetry(options, Object.keys(options.use), options.cluster?.node);
    const { observer } = telemetry;
    const given = options.store ?? memoryStore();
    observeStore(given, { log: telemetry.log, connectionFailed: observer && (() => observer.storeFailed("connection", undefined)) });
    const store = observer ? observedStore(given, observer) : given;
    const core: RegistryCore = new RegistryCore({ ...options.use }, store, () => createServerClient(core), options.cluster, telemetry);
    cores.set(this, core);
  }

  /** The in-process client: the same API as createClient, no network hop, and onAuth is skipped. */
  createServerClient(): Client<Registry<Use>> {
    return coreOf(this).client() as Client<Registry<Use>>;
  }

  /** Stops taking work, waits for in-flight handlers (bounded), runs onStop, saves every state, closes the store. */
  shutdown(): Promise<void> {
    return coreOf(this).shutdown();
  }
}

export function setup<Use extends Record<string, ActorDefinition>>(options: SetupOptions<Use>): Registry<Use> {
  return new Registry(options);
}

export function coreOf(registry: Registry<any>): RegistryCore {
  const core = cores.get(registry);
  if (!core) throw new TypeError("expected a registry from setup()");
  return core;
}
