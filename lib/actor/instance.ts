import type { Lease, LeaseLossCause } from "../cluster/types";
import { ActorError, errors } from "../errors";
import type { Logger } from "../log";
import type { ActorMeta, StateStore } from "../stores/types";
import type { ActorConfig, ActorContext } from "./definition";
import { serializeState, trackState, untracked } from "./state";

/** What an instance needs from its registry. */
export interface InstanceHost {
  readonly store: StateStore;
  readonly log: Logger;
  client(): unknown;
  evicted(instance: ActorInstance): void;
}

const DEFAULT_SAVE_INTERVAL = 1000;
const DEFAULT_SLEEP_TIMEOUT = 30_000;
const RETRY_MIN = 100;
const RETRY_MAX = 30_000;
const RESOLVED = Promise.resolve();
const noop = () => {};

type Status = "starting" | "running" | "stopping" | "stopped";

class Context implements ActorContext {
  constructor(private readonly instance: ActorInstance) {}
  get state() {
    return this.instance.state;
  }
  set state(value) {
    this.instance.replaceState(value);
  }
  get vars() {
    return this.instance.vars;
  }
  get name() {
    return this.instance.meta.name;
  }
  get key() {
    return this.instance.meta.key;
  }
  get actorId() {
    return this.instance.meta.actorId;
  }
  get log() {
    return this.instance.log;
  }
  saveState(opts?: { immediate?: boolean }) {
    return this.instance.saveState(opts);
  }
  sleep() {
    this.instance.requestSleep();
  }
  client() {
    return this.instance.host.client();
  }
}

/** One live actor: its state, its activity count, its save chain and its sleep timer. */
export class ActorInstance {
  status: Status = "starting";
  state: any;
  vars: any;
  readonly ctx: ActorContext = new Context(this);
  private logger?: Logger;

  private changes = 0;
  private saved = 0;
  private writing?: Promise<void>;
  private writingVersion = 0;
  private queued?: Promise<void>;
  private saveTimer?: NodeJS.Timeout;
  private retryTimer?: NodeJS.Timeout;
  private retryDelay = 0;
  /** The last save failed because the state itself is not JSON data, not because of the store. */
  private unsavable = false;
  private notifyQueued = false;
  private notifying = false;
  private warnedStopped = false;

  private active = 0;
  private sleepTimer?: NodeJS.Timeout;
  private sleepTimerMs = 0;
  private sleepRequested = false;
  private stopping?: Promise<boolean>;
  /** Set once the cluster lease is gone, to why: nothing this instance still does may count. */
  lostBy?: LeaseLossCause;
  /** What ends this actor's open streams and sockets when its lease is lost; made on first use. */
  private closers?: Set<() => void>;

  private constructor(
    readonly host: InstanceHost,
    readonly config: ActorConfig<any, any, any, any>,
    readonly meta: ActorMeta,
    /** In a cluster, this node's lease: its epoch fences every load and save (SPEC §8, §9). */
    readonly lease?: Lease,
  ) {}

  private get epoch() {
    return this.lease ? { epoch: this.lease.epoch } : undefined;
  }

  get log(): Logger {
    return (this.logger ??= this.host.log.child({ actor: this.meta.name, actorId: this.meta.actorId }));
  }

  /** Loads or creates the state, then runs createVars, onCreate (new actors) and onStart. */
  static async start(host: InstanceHost, config: ActorConfig<any, any, any, any>, meta: ActorMeta, lease?: Lease) {
    const instance = new ActorInstance(host, config, meta, lease);
    const saved = await host.store.load(meta.actorId, instance.epoch).catch((err) => {
      if (isFenced(err)) throw errors.leaseLost("Another node took this actor over while it was starting here");
      throw err;
    });
    const isNew = saved === undefined;
    if (isNew) {
      const initial = config.createState
        ? await config.createState(instance.ctx as ActorContext<any, undefined>, meta.input)
        : config.state;
      // A private JSON copy: no two actors (nor the definition, nor the caller's input) share objects,
      // and the state in memory is exactly what a later wake will load.
      instance.replaceState(initial === undefined ? undefined : JSON.parse(serializeState(initial)));
    } else {
      const value = JSON.parse(saved);
      // A stateless actor is saved as null, only to record that it was created.
      const stateless = value === null && config.state === undefined && !config.createState;
      instance.state = trackState(stateless ? undefined : value, () => instance.changed());
    }
    await instance.activate(isNew);
    return instance;
  }

  /** createVars, onCreate (new actors only) and onStart; then the actor takes work. */
  private async activate(isNew: boolean) {
    const { config } = this;
    if (config.createVars) this.vars = await config.createVars(this.ctx as ActorContext<any, undefined>);
    if (isNew && config.onCreate) await config.onCreate(this.ctx, this.meta.input);
    if (config.onStart) await config.onStart(this.ctx);
    this.status = "running";
    // Changes made while starting (a new state, onCreate, onStart) are saved like any other.
    if (this.dirty) this.scheduleSave();
    this.armSleep();
  }

  replaceState(value: unknown) {
    this.state = trackState(untracked(value), () => this.changed());
    this.changed();
  }

  get dirty() {
    return this.changes > this.saved;
  }

  private changed() {
    this.changes++;
    if (this.status === "stopped") {
      // A timer the actor left running: saving now could overwrite the state of a newer activation.
      if (!this.warnedStopped) this.log.warn("the state changed after the actor stopped; the change is not saved");
      this.warnedStopped = true;
      return;
    }
    this.scheduleSave();
    if (this.config.onStateChange && !this.notifyQueued && !this.notifying && this.status !== "starting") {
      this.notifyQueued = true;
      queueMicrotask(() => this.notifyStateChange());
    }
  }

  private notifyStateChange() {
    this.notifyQueued = false;
    this.notifying = true;
    const failed = (err: unknown) => this.log.error({ err }, "onStateChange threw");
    try {
      const result: unknown = this.config.onStateChange!(this.ctx, this.state);
      if (result instanceof Promise) result.catch(failed);
    } catch (err) {
      failed(err);
    } finally {
      this.notifying = false;
    }
  }

  /** A throttled save: within stateSaveInterval of the first unsaved change. */
  private scheduleSave() {
    if (this.saveTimer || this.status === "starting" || this.status === "stopped") return;
    const interval = this.config.options?.stateSaveInterval ?? DEFAULT_SAVE_INTERVAL;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      this.save().catch(noop);
    }, interval);
    this.saveTimer.unref();
  }

  /** Every save is immediate here, so `immediate` changes nothing: both forms resolve once durable. */
  saveState(_opts?: { immediate?: boolean }): Promise<void> {
    return this.save();
  }

  /** Resolves once every change made before this call is durable; rejects if that save fails. */
  save(): Promise<void> {
    const target = this.changes;
    if (this.saved >= target) return RESOLVED;
    if (this.status === "stopped") return Promise.reject(new Error("the actor has stopped; its state is no longer saved"));
    if (this.writing) {
      if (this.writingVersion >= target) return this.writing;
      return (this.queued ??= this.writing.then(
        () => this.startWrite(),
        () => this.startWrite(),
      ));
    }
    return this.startWrite();
  }

  private startWrite(): Promise<void> {
    this.queued = undefined;
    const version = this.changes;
    if (this.saved >= version) return RESOLVED;
    // A pending throttled save stays armed: it finds nothing dirty, and a request that changes
    // state then costs no new timer (one per stateSaveInterval instead of one per request).
    let text: string;
    try {
      text = this.state === undefined ? "null" : serializeState(this.state);
    } catch (err) {
      // Saving the same state again would fail the same way, so no timer retries it: the next change
      // schedules a save (the pending throttled one covered only the changes just tried).
      this.unsavable = true;
      clearTimeout(this.saveTimer);
      this.saveTimer = undefined;
      this.log.error({ err }, "saving state failed (tried again after the next change)");
      return Promise.reject(err);
    }
    this.unsavable = false;
    this.writingVersion = version;
    const write = this.host.store.save(this.meta.actorId, text, this.epoch).then(
      () => {
        this.writing = undefined;
        if (this.saved < version) this.saved = version;
        this.retryDelay = 0;
        if (this.dirty) this.scheduleSave();
        else if (this.sleepRequested) this.armSleep();
      },
      (err) => {
        this.writing = undefined;
        if (isFenced(err)) {
          // A newer owner has loaded this actor: retrying can never succeed, and serving must stop.
          this.log.warn("a save was fenced off: another node owns this actor now");
          this.loseLease("fenced");
          throw err;
        }
        this.saveFailed(err);
        throw err;
      },
    );
    this.writing = write;
    return write;
  }

  private saveFailed(err: unknown) {
    this.retryDelay = Math.min(RETRY_MAX, this.retryDelay ? this.retryDelay * 2 : RETRY_MIN);
    this.log.error({ err }, `saving state failed (retrying in ${this.retryDelay} ms)`);
    if (this.retryTimer || this.status === "stopped") return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.save().catch(noop);
    }, this.retryDelay);
    this.retryTimer.unref();
  }

  /** Marks the actor busy; false when it is stopping, so the caller must activate it again. */
  acquire(): boolean {
    if (this.status !== "running") return false;
    if (this.lease && !this.lease.valid()) {
      this.loseLease("lapsed");
      return false;
    }
    // The sleep timer stays armed: sleepIfIdle ignores a busy actor, and release() re-arms it.
    this.active++;
    return true;
  }

  get busy() {
    return this.active > 0;
  }

  release() {
    if (--this.active === 0) this.armSleep();
  }

  /** Runs onFetch; its outcome, success or error, is handed back only once the state is durable. */
  async fetch(request: Request, auth: unknown): Promise<Response> {
    let response: Response | undefined;
    let failure: ActorError | undefined;
    try {
      const result: unknown = await this.config.onFetch!(this.ctx, request, { auth });
      if (result instanceof Response) response = result;
      else {
        this.log.error(`onFetch returned ${describe(result)} instead of a Response`);
        failure = errors.invalidFetchResponse();
      }
    } catch (err) {
      if (!(err instanceof ActorError)) this.log.error({ err }, "onFetch threw");
      failure = err instanceof ActorError ? err : errors.internal();
    }
    if (this.dirty) {
      try {
        await this.save();
      } catch {
        response?.body?.cancel().catch(noop);
        throw this.lostBy ? errors.leaseLost() : errors.stateSaveFailed();
      }
    }
    if (failure) throw failure;
    return response!;
  }

  requestSleep() {
    this.sleepRequested = true;
    this.armSleep();
  }

  private armSleep() {
    if (this.status !== "running" || this.active > 0) return;
    // While saves fail, even a requested sleep waits for the normal timeout instead of spinning.
    const timeout =
      this.sleepRequested && !this.retryTimer ? 0 : (this.config.options?.sleepTimeout ?? DEFAULT_SLEEP_TIMEOUT);
    // Every request ends here: re-arming the same timer is much cheaper than a new one.
    if (this.sleepTimer && this.sleepTimerMs === timeout) {
      this.sleepTimer.refresh();
      return;
    }
    clearTimeout(this.sleepTimer);
    this.sleepTimer = undefined;
    if (!Number.isFinite(timeout)) return;
    this.sleepTimer = setTimeout(() => this.sleepIfIdle(), timeout);
    this.sleepTimer.unref();
    this.sleepTimerMs = timeout;
  }

  private sleepIfIdle() {
    this.sleepTimer = undefined;
    if (this.active > 0 || this.status !== "running") return;
    // The store is failing: stay awake with the unsaved state until a retry succeeds.
    if (this.retryTimer) this.armSleep();
    else this.stop("sleep").catch(noop);
  }

  /**
   * Sleep: save, onStop, save, evict; an actor whose state cannot be saved stays awake.
   * Shutdown: onStop, then save (retried until `deadline`), then evict in any case.
   * Resolves true once the actor is stopped and evicted.
   */
  stop(reason: "sleep" | "shutdown" | "lost", deadline = 0): Promise<boolean> {
    if (this.stopping) {
      // A sleep that ends with the actor awake must not swallow a shutdown.
      return reason === "sleep" ? this.stopping : this.stopping.then((stopped) => stopped || this.stop(reason, deadline));
    }
    this.status = "stopping";
    clearTimeout(this.sleepTimer);
    this.sleepTimer = undefined;
    if (reason === "lost") return (this.stopping = this.dropLost());
    return (this.stopping = reason === "sleep" ? this.sleep() : this.shutdown(deadline));
  }

  /** The cluster lease is gone (lapsed, taken, or a save was fenced): stop serving at once. */
  loseLease(cause: LeaseLossCause) {
    if (this.lostBy) return;
    this.lostBy = cause;
    if (this.status === "stopped") return;
    if (this.stopping) {
      // A sleep or shutdown in progress finishes on its own; its saves are fenced if they are late.
      return;
    }
    this.stop("lost").catch(noop);
  }

  /** Runs `close` if the lease is lost while the stream or socket it ends is open. */
  closeOnLeaseLoss(close: () => void) {
    (this.closers ??= new Set()).add(close);
  }

  keepOnLeaseLoss(close: () => void) {
    this.closers?.delete(close);
  }

  /**
   * No onStop: this node no longer owns the actor. One last save with the old epoch is safe
   * either way: the store takes it if no newer owner has loaded yet, and refuses it otherwise.
   */
  private async dropLost(): Promise<boolean> {
    this.log.warn({ cause: this.lostBy }, "stopped serving: this node's lease on the actor is gone");
    for (const close of [...(this.closers ?? [])]) close();
    if (this.dirty) await this.save().catch(noop);
    this.finish();
    return true;
  }

  private async sleep(): Promise<boolean> {
    try {
      // Saving before onStop means a failing store is noticed before anything is torn down.
      await this.save();
    } catch {
      // A state that is not JSON data can never be saved; staying awake would only pin it in memory.
      if (!this.unsavable) {
        this.stopping = undefined;
        this.status = "running";
        this.armSleep();
        return false;
      }
    }
    await this.runOnStop();
    try {
      await this.save();
    } catch (err) {
      if (this.unsavable) {
        this.dropUnsavedChanges(err);
        this.finish();
        return true;
      }
      // onStop has run, so restart in place rather than drop the state it could not save.
      this.log.error("staying awake: the state could not be saved after onStop; running onStart again");
      this.stopping = undefined;
      this.status = "starting";
      try {
        await this.activate(false);
      } catch (err) {
        this.log.error({ err }, "restarting in place failed");
        this.status = "running";
        this.armSleep();
      }
      return false;
    }
    this.finish();
    return true;
  }

  private async shutdown(deadline: number): Promise<boolean> {
    await this.runOnStop();
    for (let wait = RETRY_MIN; ; wait = Math.min(wait * 2, RETRY_MAX)) {
      try {
        await this.save();
        break;
      } catch (err) {
        if (this.unsavable) {
          this.dropUnsavedChanges(err);
          break;
        }
        if (Date.now() + wait > deadline) {
          this.log.error({ err }, "shutdown: the last state changes could not be saved");
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
    this.finish();
    return true;
  }

  private dropUnsavedChanges(err: unknown) {
    const why = err instanceof Error ? err.message : String(err);
    this.log.error(`stopping with a state that cannot be saved; the changes since the last save are lost (${why})`);
  }

  private async runOnStop() {
    try {
      if (this.config.onStop) await this.config.onStop(this.ctx);
    } catch (err) {
      this.log.error({ err }, "onStop threw");
    }
  }

  private finish() {
    this.status = "stopped";
    clearTimeout(this.saveTimer);
    clearTimeout(this.retryTimer);
    this.saveTimer = this.retryTimer = undefined;
    this.host.evicted(this);
  }

  /** Settles when a stop in progress has finished (whether or not the actor stayed awake). */
  whenStopped(): Promise<boolean> {
    return this.stopping ?? Promise.resolve(false);
  }
}

function isFenced(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === "fenced";
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return typeof value;
  return (value as object).constructor?.name ?? "an object";
}
