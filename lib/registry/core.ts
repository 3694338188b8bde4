import { randomUUID } from "node:crypto";
import type { ActorDefinition, AuthArgs, AuthSource } from "../actor/definition";
import { ActorInstance, type InstanceHost } from "../actor/instance";
import { OwnedElsewhere, type Cluster, type ClusterHost, type Lease, type LeaseLossCause, type Owner } from "../cluster/types";
import { ActorError, errors } from "../errors";
import type { Logger } from "../log";
import { NO_TELEMETRY, type Telemetry } from "../observe/telemetry";
import { keyId, type ActorMeta, type StateStore } from "../stores/types";
import { KnownOwners } from "./owners";
import { intentsOf, type ParsedQuery } from "./query";

/**
 * Who vouches for a request: onAuth, told where the request came from; nobody ("skip": in process,
 * or a route that is its own gate); or a route's `auth(req)`, whose result is the auth data.
 */
export type AuthBy = AuthSource | "skip" | (() => unknown);

export interface EnterOptions {
  /** The request handed to onAuth (and then to the handler). */
  request: Request;
  params: unknown;
  intent: "fetch" | "websocket" | undefined;
  authBy: AuthBy;
  /**
   * A request another node forwarded here: it is served here or refused, never forwarded again.
   * "remembered": the edge sent it to where the actor was last seen and can place it again, so it is
   * served only by an instance running here (one that went to sleep wakes where the request lands).
   */
  forwarded?: boolean | "remembered";
  /**
   * May answer OwnedElsewhere (`remembered`) from where the actor was last found, without the store
   * and Redis: the caller must be able to place the request again if that owner refuses it unserved.
   */
  rememberedOwner?: boolean;
}

export interface Entered {
  instance: ActorInstance;
  auth: unknown;
}

const SHUTDOWN_GRACE_MS = 10_000;

/** The registry's working parts; the public Registry object only exposes createServerClient and shutdown. */
export class RegistryCore implements InstanceHost, ClusterHost {
  private readonly instances = new Map<string, ActorInstance>();
  private readonly activating = new Map<string, Promise<ActorInstance>>();
  private readonly keyIndex = new Map<string, string>();
  /** In a cluster: the actors other nodes were found to own. */
  private readonly owners?: KnownOwners;
  private shutdownPromise?: Promise<void>;
  private serverClient?: unknown;
  /** Run when shutdown begins: open sockets and event streams end at once. */
  readonly closers = new Set<() => void>();
  /** Run at the shutdown deadline: streamed responses still going are cut. */
  private readonly cutters = new Set<() => void>();
  private pastDeadline = false;
  /** Set by setup(): the logger, metrics and tracer the options asked for. */
  telemetry: Telemetry = NO_TELEMETRY;

  constructor(
    readonly definitions: Record<string, ActorDefinition>,
    readonly store: StateStore,
    private readonly makeClient: () => unknown,
    readonly cluster?: Cluster,
    telemetry?: Telemetry,
  ) {
    // Before attach, so the cluster logs through it from the start.
    if (telemetry) this.telemetry = telemetry;
    if (cluster) this.owners = new KnownOwners();
    cluster?.attach(this);
  }

  get log(): Logger {
    return this.telemetry.log;
  }

  get shuttingDown() {
    return this.shutdownPromise !== undefined;
  }

  /** Runs `fn` when shutdown begins, or now if it has; returns what unregisters it. */
  atShutdown(fn: () => void): () => void {
    return this.register(this.closers, fn, this.shuttingDown);
  }

  /** Runs `fn` at the shutdown deadline, or now if it has passed; returns what unregisters it. */
  atDeadline(fn: () => void): () => void {
    return this.register(this.cutters, fn, this.pastDeadline);
  }

  private register(set: Set<() => void>, fn: () => void, due: boolean): () => void {
    if (due) {
      fn();
      return noop;
    }
    set.add(fn);
    return () => set.delete(fn);
  }

  client() {
    return (this.serverClient ??= this.makeClient());
  }

  definition(name: string): ActorDefinition {
    if (!Object.prototype.hasOwnProperty.call(this.definitions, name)) {
      throw errors.actorNotFound(`no actor named "${name}"`);
    }
    return this.definitions[name];
  }

  /**
   * Authorizes, resolves and activates the actor of `query`, and marks it busy.
   * The caller must call `instance.release()` once its request (or stream, or socket) is over.
   */
  async enter(query: ParsedQuery, opts: EnterOptions): Promise<Entered> {
    const definition = this.admit(query);
    let auth = this.authorize(definition, query, opts);
    if (isThenable(auth)) auth = await auth;
    this.checkHandler(definition, query.name, opts.intent);
    // The hot path: a running actor is found and acquired without awaiting anything more.
    const running = this.running(query);
    if (running) return { instance: running, auth };
    if (opts.forwarded === "remembered") throw errors.leaseLost("This actor no longer runs on this node; try again");
    // The forwarding hop's hot path: no store lookup, no claim; only while Redis vouches for this node.
    const known = opts.rememberedOwner && !opts.forwarded ? this.owners?.find(query) : undefined;
    if (known && this.cluster!.healthy()) throw OwnedElsewhere.of(known.owner, known.meta, auth, true);
    const meta = await this.resolve(query);
    try {
      return { instance: await this.activate(meta, definition), auth };
    } catch (err) {
      if (!(err instanceof OwnedElsewhere)) throw err;
      if (opts.forwarded) throw errors.leaseLost("This actor moved to another node; try again");
      throw OwnedElsewhere.of(err.owner, err.meta, auth);
    }
  }

  /** Authorization, then the handler check, then lookup or creation: never the other way round. */
  async locate(query: ParsedQuery, opts: EnterOptions) {
    const definition = this.admit(query);
    const auth = await this.authorize(definition, query, opts);
    this.checkHandler(definition, query.name, opts.intent);
    const { meta, created } = await this.find(query);
    return { definition, meta, created, auth };
  }

  private admit(query: ParsedQuery): ActorDefinition {
    if (this.shuttingDown) throw errors.shuttingDown();
    return this.definition(query.name);
  }

  private checkHandler(definition: ActorDefinition, name: string, intent: EnterOptions["intent"]) {
    if (intent === "fetch" && !definition.config.onFetch) throw errors.fetchNotDefined(name);
    if (intent === "websocket" && !definition.config.onWebSocket) throw errors.websocketNotDefined(name);
    if (this.shuttingDown) throw errors.shuttingDown();
  }

  /** The live instance a get / getOrCreate / getForId query names, acquired; undefined when not running. */
  private running(query: ParsedQuery): ActorInstance | undefined {
    if (query.kind === "create") return undefined;
    const id = query.kind === "getForId" ? query.actorId : this.keyIndex.get(query.keyId);
    const instance = id === undefined ? undefined : this.instances.get(id);
    if (!instance || instance.meta.name !== query.name || !instance.acquire()) return undefined;
    return instance;
  }

  /** The auth data (onAuth's or the route's), or a promise of it when async; failures become SPEC §5 errors. */
  authorize(definition: ActorDefinition, query: ParsedQuery, opts: EnterOptions): unknown {
    const { authBy, params } = opts;
    if (authBy === "skip") return undefined;
    let check: () => unknown;
    let what: string;
    if (typeof authBy === "function") {
      check = authBy;
      what = `The route's auth(req) for "${query.name}"`;
    } else {
      const onAuth = definition.config.onAuth;
      if (!onAuth) throw errors.forbidden();
      const intents = new Set<AuthArgs["intents"] extends Set<infer T> ? T : never>(intentsOf(query.kind));
      if (opts.intent) intents.add(opts.intent);
      check = () => onAuth({ request: opts.request, intents, params, source: authBy }, params);
      what = `onAuth of "${query.name}"`;
    }
    const failed = (err: unknown) => {
      if (err instanceof ActorError) return err;
      this.log.error({ err, actor: query.name }, `${what} threw`);
      return errors.internal();
    };
    let result: unknown;
    try {
      result = check();
    } catch (err) {
      throw failed(err);
    }
    if (!isThenable(result)) return result;
    return Promise.resolve(result).catch((err) => {
      throw failed(err);
    });
  }

  /** Finds (or creates, per the query) the actor's record without activating it. */
  async resolve(query: ParsedQuery): Promise<ActorMeta> {
    return (await this.find(query)).meta;
  }

  /** resolve(), also telling whether this call created the actor. */
  private async find(query: ParsedQuery): Promise<{ meta: ActorMeta; created: boolean }> {
    const { kind, name, key } = query;
    if (kind === "getForId") {
      const meta = await this.lookupId(query.actorId);
      if (!meta || meta.name !== name) throw errors.actorNotFound(`no "${name}" actor with id ${query.actorId}`);
      return { meta, created: false };
    }
    const knownId = this.keyIndex.get(query.keyId);
    const known = knownId === undefined ? undefined : this.instances.get(knownId)?.meta;
    if (kind === "create") {
      if (known) throw errors.alreadyExists(name, key);
      const result = await this.store.createIfAbsent(newMeta(query));
      if (!result.created) throw errors.alreadyExists(name, key);
      return result;
    }
    if (known) return { meta: known, created: false };
    const found = await this.store.lookupKey(name, key);
    if (found) return { meta: found, created: false };
    if (kind === "get") throw errors.actorNotFound(`no "${name}" actor with key ${JSON.stringify(key)}`);
    return this.store.createIfAbsent(newMeta(query));
  }

  /** The record of an actor id, whatever its name; undefined when there is none. */
  async lookupId(actorId: string): Promise<ActorMeta | undefined> {
    return this.instances.get(actorId)?.meta ?? (await this.store.lookupId(actorId));
  }

  /** Exactly one activation per actor id, shared by concurrent callers; returns it acquired. */
  private async activate(meta: ActorMeta, definition: ActorDefinition): Promise<ActorInstance> {
    const id = meta.actorId;
    for (;;) {
      if (this.shuttingDown) throw errors.shuttingDown();
      const running = this.instances.get(id);
      if (running) {
        if (running.acquire()) return running;
        await running.whenStopped();
        continue;
      }
      let pending = this.activating.get(id);
      if (!pending) {
        pending = this.startInstance(meta, definition);
        this.activating.set(id, pending);
      }
      const instance = await pending;
      if (instance.acquire()) return instance;
    }
  }

  private async startInstance(meta: ActorMeta, definition: ActorDefinition): Promise<ActorInstance> {
    let lease: Lease | undefined;
    try {
      if (this.cluster) {
        const placement = await this.cluster.claim(meta.actorId);
        if ("owner" in placement) {
          this.owners!.remember(meta, placement.owner);
          throw OwnedElsewhere.of(placement.owner, meta);
        }
        this.owners!.forget(meta.actorId);
        lease = placement.lease;
        this.telemetry.observer?.leaseAcquired(meta.name, lease);
      }
      const instance = await ActorInstance.start(this, definition.config, meta, lease);
      this.instances.set(meta.actorId, instance);
      this.keyIndex.set(keyId(meta.name, meta.key), meta.actorId);
      this.telemetry.observer?.activated(meta);
      return instance;
    } catch (err) {
      if (lease) this.cluster!.release(meta.actorId, lease);
      if (err instanceof OwnedElsewhere) throw err;
      this.log.error({ err, actor: meta.name, actorId: meta.actorId }, "activating the actor failed");
      throw err instanceof ActorError ? err : errors.internal();
    } finally {
      this.activating.delete(meta.actorId);
    }
  }

  evicted(instance: ActorInstance) {
    const { actorId, name, key } = instance.meta;
    if (this.instances.get(actorId) === instance) {
      this.instances.delete(actorId);
      this.telemetry.observer?.stopped(instance.meta, instance.lostBy ?? (this.shuttingDown ? "shutdown" : "sleep"));
    }
    const id = keyId(name, key);
    if (this.keyIndex.get(id) === actorId) this.keyIndex.delete(id);
    if (instance.lease) this.cluster!.release(actorId, instance.lease);
  }

  /** The owner a hop went to did not serve the request (it let go of the actor, or is gone). */
  ownerRefused(actorId: string, owner: Owner) {
    this.owners?.forget(actorId, owner);
  }

  leaseLost(actorId: string, lease: Lease, cause: LeaseLossCause) {
    const instance = this.instances.get(actorId);
    if (instance?.lease === lease) instance.loseLease(cause);
  }

  /** Number of live instances, for tests and benchmarks. */
  get size() {
    return this.instances.size;
  }

  shutdown(graceMs = SHUTDOWN_GRACE_MS): Promise<void> {
    return (this.shutdownPromise ??= this.runShutdown(graceMs));
  }

  private async runShutdown(graceMs: number) {
    for (const close of this.closers) close();
    await Promise.allSettled(this.activating.values());
    const deadline = Date.now() + graceMs;
    while ([...this.instances.values()].some((i) => i.busy) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    this.pastDeadline = true;
    for (const cut of this.cutters) cut();
    await Promise.allSettled([...this.instances.values()].map((i) => i.stop("shutdown", deadline)));
    try {
      await this.store.close?.();
    } catch (err) {
      this.log.error({ err }, "closing the store failed");
    }
    try {
      await this.cluster?.close();
    } catch (err) {
      this.log.error({ err }, "leaving the cluster failed");
    }
  }
}

const noop = () => {};

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === "object" || typeof value === "function") && typeof (value as PromiseLike<unknown>).then === "function";
}

function newMeta(query: ParsedQuery): ActorMeta {
  const meta: ActorMeta = { actorId: randomUUID(), name: query.name, key: query.key, createdAt: Date.now() };
  if (query.input !== undefined) meta.input = jsonCopy(query.input);
  return meta;
}

/** The input as an HTTP client would send it, so an in-process caller never shares objects with the actor. */
function jsonCopy(value: unknown): unknown {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    throw errors.invalidQuery("The actor input is not JSON data");
  }
  return text === undefined ? undefined : JSON.parse(text);
}
