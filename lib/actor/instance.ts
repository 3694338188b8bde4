import { ActorError, errors } from "../errors";
import { createLogger, type Logger } from "../log";
import type { ActorMeta, StateStore } from "../stores/types";
import type { ActorConfig, ActorContext } from "./definition";
import { serializeState, trackState } from "./state";

/** What an instance needs from its registry. */
export interface InstanceHost {
  readonly store: StateStore;
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
  private notifyQueued = false;
  private notifying = false;

  private active = 0;
  private fetching = 0;
  private sleepTimer?: NodeJS.Timeout;
  private sleepRequested = false;
  private stopping?: Promise<boolean>;

  private constructor(
    readonly host: InstanceHost,
    readonly config: ActorConfig<any, any, any, any>,
    readonly meta: ActorMeta,
  ) {}

  get log(): Logger {
    return (this.logger ??= createLogger(`${this.meta.name}/${this.meta.actorId}`));
  }

  /** Loads or creates the state, then runs createVars, onCreate (new actors) and onStart. */
  static async start(host: InstanceHost, config: ActorConfig<any, any, any, any>, meta: ActorMeta) {
    const instance = new ActorInstance(host, config, meta);
    const saved = await host.store.load(meta.actorId);
    const isNew = saved === undefined;
    if (isNew) {
      const initial = config.createState
        ? await config.createState(instance.ctx as ActorContext<any, undefined>, meta.input)
        : config.state === undefined
          ? undefined
          : JSON.parse(serializeState(config.state));
      instance.replaceState(initial);
    } else {
      instance.state = trackState(JSON.parse(saved), () => instance.changed());
    }
    if (config.createVars) instance.vars = await config.createVars(instance.ctx as ActorContext<any, undefined>);
    if (isNew && config.onCreate) await config.onCreate(instance.ctx, meta.input);
    if (config.onStart) await config.onStart(instance.ctx);
    instance.status = "running";
    instance.armSleep();
    return instance;
  }

  replaceState(value: unknown) {
    this.state = trackState(value, () => this.changed());
    this.changed();
  }

  get dirty() {
    return this.changes > this.saved;
  }

  private changed() {
    this.changes++;
    if (this.fetching === 0) this.scheduleSave();
    if (this.config.onStateChange && !this.notifyQueued && !this.notifying && this.status !== "starting") {
      this.notifyQueued = true;
      queueMicrotask(() => this.notifyStateChange());
    }
  }

  private notifyStateChange() {
    this.notifyQueued = false;
    this.notifying = true;
    try {
      this.config.onStateChange!(this.ctx, this.state);
    } catch (err) {
      this.log.error("onStateChange threw:", err);
    } finally {
      this.notifying = false;
    }
  }

  /** A throttled save: within stateSaveInterval of the first unsaved change. */
  private scheduleSave() {
    if (this.saveTimer || this.status === "starting") return;
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
    if (this.saveTimer) {
      clearTimeout(this.saveTimer);
      this.saveTimer = undefined;
    }
    let text: string;
    try {
      text = serializeState(this.state);
    } catch (err) {
      this.saveFailed(err);
      return Promise.reject(err);
    }
    this.writingVersion = version;
    const write = this.host.store.save(this.meta.actorId, text).then(
      () => {
        this.writing = undefined;
        if (this.saved < version) this.saved = version;
        this.retryDelay = 0;
        if (this.dirty && this.fetching === 0) this.scheduleSave();
      },
      (err) => {
        this.writing = undefined;
        this.saveFailed(err);
        throw err;
      },
    );
    this.writing = write;
    return write;
  }

  private saveFailed(err: unknown) {
    this.retryDelay = Math.min(RETRY_MAX, this.retryDelay ? this.retryDelay * 2 : RETRY_MIN);
    this.log.error(`saving state failed (retrying in ${this.retryDelay} ms):`, err instanceof Error ? err.message : err);
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
    this.active++;
    if (this.sleepTimer) {
      clearTimeout(this.sleepTimer);
      this.sleepTimer = undefined;
    }
    return true;
  }

  get busy() {
    return this.active > 0;
  }

  release() {
    if (--this.active === 0) this.armSleep();
  }

  /** Runs onFetch and makes its state changes durable before the caller may send the response. */
  async fetch(request: Request, auth: unknown): Promise<Response> {
    const onFetch = this.config.onFetch!;
    let response: unknown;
    this.fetching++;
    try {
      response = await onFetch(this.ctx, request, { auth });
    } catch (err) {
      if (this.dirty) this.scheduleSave();
      if (err instanceof ActorError) throw err;
      this.log.error("onFetch threw:", err);
      throw errors.internal();
    } finally {
      this.fetching--;
    }
    if (!(response instanceof Response)) {
      if (this.dirty) this.scheduleSave();
      this.log.error("onFetch returned", describe(response), "instead of a Response");
      throw errors.invalidFetchResponse();
    }
    if (this.dirty) {
      try {
        await this.save();
      } catch {
        response.body?.cancel().catch(noop);
        throw errors.stateSaveFailed();
      }
    }
    return response;
  }

  requestSleep() {
    this.sleepRequested = true;
    if (this.active === 0 && this.status === "running") setImmediate(() => this.sleepIfIdle());
  }

  private armSleep() {
    if (this.status !== "running") return;
    if (this.sleepRequested) {
      setImmediate(() => this.sleepIfIdle());
      return;
    }
    const timeout = this.config.options?.sleepTimeout ?? DEFAULT_SLEEP_TIMEOUT;
    if (!Number.isFinite(timeout)) return;
    if (this.sleepTimer) this.sleepTimer.refresh();
    else {
      this.sleepTimer = setTimeout(() => this.sleepIfIdle(), timeout);
      this.sleepTimer.unref();
    }
  }

  private sleepIfIdle() {
    this.sleepTimer = undefined;
    if (this.active === 0 && this.status === "running") this.stop("sleep").catch(noop);
  }

  /** onStop, then a final save. A sleep that cannot save keeps the actor alive; shutdown evicts anyway. */
  stop(reason: "sleep" | "shutdown"): Promise<boolean> {
    if (this.stopping) return this.stopping;
    this.status = "stopping";
    const run = async () => {
      clearTimeout(this.sleepTimer);
      this.sleepTimer = undefined;
      try {
        if (this.config.onStop) await this.config.onStop(this.ctx);
      } catch (err) {
        this.log.error("onStop threw:", err);
      }
      try {
        await this.save();
      } catch (err) {
        if (reason === "sleep") {
          this.log.error("staying awake: the state could not be saved before sleeping");
          this.stopping = undefined;
          this.sleepRequested = false;
          this.status = "running";
          this.armSleep();
          return false;
        }
        this.log.error("shutdown: the last state changes could not be saved:", err);
      }
      this.status = "stopped";
      clearTimeout(this.saveTimer);
      clearTimeout(this.retryTimer);
      this.host.evicted(this);
      return true;
    };
    return (this.stopping = run());
  }

  /** Settles when a stop in progress has finished (whether or not the actor stayed awake). */
  whenStopped(): Promise<boolean> {
    return this.stopping ?? Promise.resolve(false);
  }
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value !== "object") return typeof value;
  return (value as object).constructor?.name ?? "an object";
}
