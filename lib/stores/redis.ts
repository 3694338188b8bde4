import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import { loadDriver } from "./driver";
import { epochOf, fencedError } from "./fencing";
import { keyId, type ActorMeta, type StateStore } from "./types";
import { observedBy, storeObserver, type StoreObserver } from "./observed";

export interface RedisStoreOptions {
  /** A `redis://` URL; the store makes its own client and quits it in `close()`. */
  url?: string;
  /** A client of yours (ioredis ^5, not a Cluster); the store never closes it. */
  client?: Redis;
  /** Put before every key the store writes; default `express-actors:`. */
  prefix?: string;
}

/** Scripts for the steps whose check and write must not be split. Lua `false` is a nil reply. */
const SCRIPTS = {
  // KEYS: key record, actor hash. ARGV: meta, key id. Returns the existing meta, or nil once created.
  create: `
    local existing = redis.call('GET', KEYS[1])
    if existing then return existing end
    redis.call('SET', KEYS[1], ARGV[1])
    redis.call('HSET', KEYS[2], 'meta', ARGV[1], 'keyid', ARGV[2])
    return false`,
  // KEYS: actor hash. ARGV: state, epoch. Returns the higher stored epoch when fenced, else nil.
  // The epoch is stored as given (a string): Lua would print a large number in %.14g.
  fencedSave: `
    local highest = redis.call('HGET', KEYS[1], 'epoch')
    if highest and tonumber(highest) > tonumber(ARGV[2]) then return highest end
    redis.call('HSET', KEYS[1], 'state', ARGV[1], 'epoch', ARGV[2])
    return false`,
  // KEYS: actor hash. ARGV: epoch. Returns {0, higher epoch} when fenced, else {1, state or nil}.
  claim: `
    local highest = redis.call('HGET', KEYS[1], 'epoch')
    if highest and tonumber(highest) > tonumber(ARGV[1]) then return {0, highest} end
    redis.call('HSET', KEYS[1], 'epoch', ARGV[1])
    return {1, redis.call('HGET', KEYS[1], 'state')}`,
  // KEYS: actor hash, its key record. The key record goes only if it still names this actor.
  delete: `
    local meta = redis.call('HGET', KEYS[1], 'meta')
    if meta and redis.call('GET', KEYS[2]) == meta then redis.call('DEL', KEYS[2]) end
    redis.call('DEL', KEYS[1])
    return 1`,
};
type ScriptName = keyof typeof SCRIPTS;
const SHAS = Object.fromEntries(
  Object.entries(SCRIPTS).map(([name, body]) => [name, createHash("sha1").update(body).digest("hex")]),
) as Record<ScriptName, string>;

/**
 * A StateStore in Redis (ioredis): per actor a hash `{prefix}actor:{id}` (meta, key id, state,
 * epoch) and a string `{prefix}key:{key id}` (meta). A save resolves once Redis has acknowledged
 * it; whether it survives a Redis crash is Redis's own persistence setting (AOF, RDB).
 * Redis Cluster is not supported: the scripts touch an actor's two keys together.
 */
export function redisStore(options: RedisStoreOptions): StateStore {
  const { url, client: given, prefix = "express-actors:" } = options ?? {};
  if ((url === undefined) === (given === undefined)) throw new TypeError("redisStore: pass either `url` or `client`");
  if (url !== undefined && typeof url !== "string") throw new TypeError("redisStore: `url` must be a string");
  if (typeof prefix !== "string") throw new TypeError("redisStore: `prefix` must be a string");
  const connection: { lastError?: Error; observer: { current: StoreObserver } } = { observer: storeObserver() };
  const client = given ?? ownClient(url!, connection);
  let closed: Promise<void> | undefined;

  const actorKey = (actorId: string) => `${prefix}actor:${actorId}`;
  const keyKey = (id: string) => `${prefix}key:${id}`;

  // ioredis drops, without settling, a command whose connection closed before the reply when it is
  // not set to send it again: each step in flight is failed here when the connection closes.
  const inFlight = new Set<(err: Error) => void>();
  const connectionClosed = () => {
    for (const fail of [...inFlight]) fail(new Error("the connection closed before Redis answered"));
  };
  client.on("close", connectionClosed);

  /** Runs one step; while the connection is down its error says where Redis was expected. */
  function call<T>(step: () => Promise<T>): Promise<T> {
    if (closed) return Promise.reject(new Error("redisStore: the store is closed"));
    return new Promise<T>((resolve, reject) => {
      const fail = (err: Error) => {
        inFlight.delete(fail);
        if (client.status === "ready") return reject(err);
        const { host, port } = client.options;
        const why = connection.lastError?.message ?? err.message;
        reject(new Error(`redisStore: no answer from Redis at ${host}:${port} (${why})`, { cause: err }));
      };
      inFlight.add(fail);
      step().then((value) => {
        inFlight.delete(fail);
        resolve(value);
      }, fail);
    });
  }

  /** EVALSHA, and EVAL when the server has lost its script cache (a restart, SCRIPT FLUSH). */
  async function run(name: ScriptName, keys: string[], args: Array<string | number>): Promise<any> {
    try {
      return await client.evalsha(SHAS[name], keys.length, ...keys, ...args);
    } catch (err) {
      if (!String((err as Error).message).startsWith("NOSCRIPT")) throw err;
      return client.eval(SCRIPTS[name], keys.length, ...keys, ...args);
    }
  }

  const parse = (text: string | null): ActorMeta | undefined => (text === null ? undefined : JSON.parse(text));

  return observedBy<StateStore>({
    async createIfAbsent(meta) {
      const id = keyId(meta.name, meta.key);
      const text = JSON.stringify(meta);
      const existing: string | null = await call(() => run("create", [keyKey(id), actorKey(meta.actorId)], [text, id]));
      return existing === null ? { created: true, meta: JSON.parse(text) } : { created: false, meta: parse(existing)! };
    },
    async lookupKey(name, key) {
      return parse(await call(() => client.get(keyKey(keyId(name, key)))));
    },
    async lookupId(actorId) {
      return parse(await call(() => client.hget(actorKey(actorId), "meta")));
    },
    async load(actorId, options) {
      const epoch = epochOf(options);
      if (epoch === undefined) return (await call(() => client.hget(actorKey(actorId), "state"))) ?? undefined;
      const [admitted, value]: [number, string | null] = await call(() => run("claim", [actorKey(actorId)], [epoch]));
      if (!admitted) throw fencedError(actorId, epoch, Number(value));
      return value ?? undefined;
    },
    async save(actorId, state, options) {
      const epoch = epochOf(options);
      if (epoch === undefined) {
        await call(() => client.hset(actorKey(actorId), "state", state));
        return;
      }
      const highest: string | null = await call(() => run("fencedSave", [actorKey(actorId)], [state, epoch]));
      if (highest !== null) throw fencedError(actorId, epoch, Number(highest));
    },
    async delete(actorId) {
      await call(async () => {
        const id = await client.hget(actorKey(actorId), "keyid");
        // The key id is written with the meta, in one script: without it there is no key record.
        if (id === null) await client.del(actorKey(actorId));
        else await run("delete", [actorKey(actorId), keyKey(id)], []);
      });
    },
    close() {
      if (!closed) client.off("close", connectionClosed);
      return (closed ??= given ? Promise.resolve() : quit(client));
    },
  }, connection.observer);
}

function ownClient(url: string, connection: { lastError?: Error; observer: { current: StoreObserver } }): Redis {
  const { Redis: Driver } = loadDriver<typeof import("ioredis")>("ioredis", "redisStore");
  const client = new Driver(url, {
    // A command whose connection drops is not sent again later (the store has failed it already):
    // the actor retries its save with its current state, and an old state never lands late.
    autoResendUnfulfilledCommands: false,
    // While Redis is unreachable a call fails after one reconnection attempt instead of waiting.
    maxRetriesPerRequest: 1,
  });
  client.on("error", (err: Error) => {
    // Logged once per outage: the client retries every few seconds until Redis answers again.
    const { observer } = connection;
    if (!connection.lastError) observer.current.log.warn({ err }, "redisStore: the connection to Redis failed (reconnecting)");
    observer.current.connectionFailed?.();
    connection.lastError = err;
  });
  client.on("ready", () => (connection.lastError = undefined));
  return client;
}

async function quit(client: Redis) {
  // Without a connection there is nothing to say goodbye on; disconnect() also stops reconnecting.
  if (client.status !== "ready") {
    client.disconnect();
    return;
  }
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
}
