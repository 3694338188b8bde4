import { createHash, randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { Redis } from "ioredis";
import { errors } from "../errors";
import { log, type Logger } from "../log";
import { loadDriver } from "../stores/driver";
import { createForwarder } from "./proxy";
import { createSocketRelay } from "./socket-relay";
import { forwardVerifier } from "./signing";
import type { Cluster, ClusterHost, Lease, LeaseLossCause, Owner } from "./types";

export interface RedisClusterOptions {
  /** A `redis://` URL; the cluster makes its own client and quits it at shutdown. */
  url?: string;
  /** A client of yours (ioredis ^5, one Redis primary, not a Redis Cluster); never closed here. */
  client?: Redis;
  /** Where the other nodes reach this node's mount, e.g. `http://10.0.0.5:3001/registry`. */
  advertise: string;
  /** Shared by every node; signs forwarded requests (HMAC-SHA256). At least 16 characters. */
  secret: string;
  /** How long a lease lives without renewal, in ms; default 10 s. */
  leaseMs?: number;
  /** Put before every key the cluster writes; default `express-actors:cluster:`. */
  prefix?: string;
}

const DEFAULT_LEASE_MS = 10_000;
const MIN_LEASE_MS = 300;
const RENEW_BATCH = 500;

/** Scripts for the steps whose check and write must not be split. */
const SCRIPTS = {
  // KEYS: lease, epoch counter, holder. ARGV: node id, lease ms, node key prefix.
  // Returns {1, lease value, epoch, takeover} once taken, else {0, holder value, ms left, holder's node record}.
  // The epoch is at least Redis's clock in ms, so it keeps growing even if Redis loses the counter.
  // The holder key outlives an expired lease (a release deletes it): a takeover is a claim that finds
  // another node's there.
  claim: `
    local current = redis.call('GET', KEYS[1])
    if current and string.sub(current, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then
      local holder = string.match(current, '^(%S+)')
      return {0, current, redis.call('PTTL', KEYS[1]), redis.call('GET', ARGV[3] .. holder)}
    end
    local epoch = redis.call('INCR', KEYS[2])
    local now = redis.call('TIME')
    local floor = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    if epoch < floor then
      epoch = floor
      redis.call('SET', KEYS[2], string.format('%d', floor))
    end
    local value = ARGV[1] .. ' ' .. string.format('%d', epoch)
    redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
    local before = redis.call('GET', KEYS[3])
    redis.call('SET', KEYS[3], value)
    local takeover = 0
    if before and string.sub(before, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then takeover = 1 end
    return {1, value, string.format('%d', epoch), takeover}`,
  // KEYS: this node's record, then leases. ARGV: lease ms, record, record ms, then each lease's value.
  // The heartbeat and every renewal in one round trip; returns 1 or 0 per lease.
  renew: `
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
    local kept = {}
    for i = 2, #KEYS do
      if redis.call('GET', KEYS[i]) == ARGV[i + 2] then
        redis.call('PEXPIRE', KEYS[i], ARGV[1])
        kept[i - 1] = 1
      else
        kept[i - 1] = 0
      end
    end
    return kept`,
  // KEYS: lease, holder. ARGV: its value. Compare and delete: never someone else's lease.
  release: `
    if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
    if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
    return 0`,
};
type ScriptName = keyof typeof SCRIPTS;
const SHAS = Object.fromEntries(
  Object.entries(SCRIPTS).map(([name, body]) => [name, createHash("sha1").update(body).digest("hex")]),
) as Record<ScriptName, string>;

class HeldLease implements Lease {
  /** performance.now() until which this node may act as the owner. */
  validUntil: number;
  lost = false;

  constructor(
    readonly actorId: string,
    readonly value: string,
    readonly epoch: number,
    validUntil: number,
    readonly takeover: boolean,
  ) {
    this.validUntil = validUntil;
  }

  valid() {
    return !this.lost && performance.now() < this.validUntil;
  }
}

/**
 * Many processes, one owner per actor (SPEC §9), coordinated by one Redis primary. Pass it to
 * `setup({ cluster })`; every node shares the registry's store and this Redis.
 */
export function redisCluster(options: RedisClusterOptions): Cluster {
  const { url, client: given, advertise, secret, leaseMs = DEFAULT_LEASE_MS, prefix = "express-actors:cluster:" } = options ?? {};
  if ((url === undefined) === (given === undefined)) throw new TypeError("redisCluster: pass either `url` or `client`");
  if (url !== undefined && typeof url !== "string") throw new TypeError("redisCluster: `url` must be a string");
  if (typeof advertise !== "string" || !/^https?:$/.test(parseUrl(advertise)?.protocol ?? "")) {
    throw new TypeError("redisCluster: `advertise` must be this node's http(s) URL of its mount, e.g. http://10.0.0.5:3001/registry");
  }
  if (typeof secret !== "string" || secret.length < 16) {
    throw new TypeError("redisCluster: `secret` must be a string of at least 16 characters, the same on every node");
  }
  if (!Number.isSafeInteger(leaseMs) || leaseMs < MIN_LEASE_MS) {
    throw new TypeError(`redisCluster: \`leaseMs\` must be an integer of at least ${MIN_LEASE_MS}`);
  }
  if (typeof prefix !== "string") throw new TypeError("redisCluster: `prefix` must be a string");
  let cluster: RedisCluster | undefined;
  const client = given ?? ownClient(url!, () => cluster?.logger ?? log);
  return (cluster = new RedisCluster(client, given === undefined, advertise, secret, leaseMs, prefix));
}

class RedisCluster implements Cluster {
  readonly nodeId = randomUUID();
  private host?: ClusterHost;
  private readonly leases = new Map<string, HeldLease>();
  private readonly releases = new Set<Promise<unknown>>();
  private readonly forwarder;
  private readonly relay;
  readonly verify: Cluster["verify"];
  /** No lease is trusted past its last confirmation plus leaseMs minus this, nor a Redis call awaited longer. */
  private readonly margin: number;
  private readonly timeout: number;
  private heartbeat?: NodeJS.Timeout;
  private lapseTimer?: NodeJS.Timeout;
  /** performance.now() until which the last heartbeat vouches for this node's view of Redis. */
  private confirmedUntil = 0;
  private closed?: Promise<void>;

  constructor(
    private readonly client: Redis,
    private readonly ownsClient: boolean,
    private readonly advertise: string,
    secret: string,
    private readonly leaseMs: number,
    private readonly prefix: string,
  ) {
    this.margin = Math.min(1000, Math.floor(leaseMs / 5));
    this.timeout = Math.max(100, Math.min(2000, Math.floor(leaseMs / 4)));
    this.forwarder = createForwarder(secret, () => this.logger);
    // An owner that cannot finish a handshake within a lease is gone or frozen: the client retries.
    this.relay = createSocketRelay(secret, leaseMs, () => this.logger);
    this.verify = forwardVerifier(secret);
  }

  get node() {
    return this.advertise;
  }

  /** The registry's logger once attached: its lines carry `node`. */
  get logger(): Logger {
    return this.host?.log ?? log;
  }

  attach(host: ClusterHost) {
    if (this.host) throw new TypeError("redisCluster: one cluster() value serves one registry");
    this.host = host;
    const beat = () => void this.renew();
    this.heartbeat = setInterval(beat, Math.floor(this.leaseMs / 3));
    this.heartbeat.unref();
    beat();
    this.logger.debug({ nodeId: this.nodeId }, "joined the cluster");
  }

  private key(kind: "lease" | "epoch" | "holder" | "node", id: string) {
    return `${this.prefix}${kind}:${id}`;
  }

  async claim(actorId: string): Promise<{ lease: Lease } | { owner: Owner }> {
    if (this.closed) throw errors.shuttingDown();
    const sent = performance.now();
    let reply: Array<string | number | null>;
    try {
      reply = await this.run("claim", [this.key("lease", actorId), this.key("epoch", actorId), this.key("holder", actorId)], [
        this.nodeId,
        this.leaseMs,
        this.key("node", ""),
      ]);
    } catch (err) {
      this.logger.warn({ err }, "redisCluster: cannot claim a lease");
      throw errors.clusterUnavailable();
    }
    if (Number(reply[0]) === 1) {
      const lease = new HeldLease(actorId, String(reply[1]), Number(reply[2]), sent + this.leaseMs - this.margin, Number(reply[3]) === 1);
      this.leases.set(actorId, lease);
      this.armLapse();
      return { lease };
    }
    const holder = String(reply[1]).split(" ")[0];
    const record = reply[3] === null || reply[3] === undefined ? undefined : parseRecord(String(reply[3]));
    const left = Number(reply[2]);
    // The lease had `left` ms to live when Redis answered, so at least that much after we asked.
    const until = record && left > 0 ? sent + left : undefined;
    return { owner: { nodeId: holder, url: record?.url, retryAfter: Math.max(1, Math.ceil(left / 1000)), until } };
  }

  release(actorId: string, lease: Lease) {
    const held = lease as HeldLease;
    if (this.leases.get(actorId) === held) this.leases.delete(actorId);
    held.lost = true;
    const done = this.run("release", [this.key("lease", actorId), this.key("holder", actorId)], [held.value])
      .catch((err) => this.logger.warn({ err }, "redisCluster: releasing a lease failed (it expires by itself)"))
      .finally(() => this.releases.delete(done));
    this.releases.add(done);
  }

  healthy() {
    return !this.closed && performance.now() < this.confirmedUntil;
  }

  forwardHttp: Cluster["forwardHttp"] = (req, res, owner, claims, body, watch, refused) =>
    this.forwarder.http(req, res, owner, claims, body, watch, refused);
  forwardFetch: Cluster["forwardFetch"] = (request, owner, claims, watch, refused) => this.forwarder.fetch(request, owner, claims, watch, refused);
  forwardSocket: Cluster["forwardSocket"] = (client, request, owner, claims, closers, watch, gone) =>
    this.relay(client, request, owner, claims, closers, watch, gone);


  /** Heartbeat and renewal of every lease held, in batches of one script call each. */
  private async renew() {
    if (this.closed) return;
    const sent = performance.now();
    const held = [...this.leases.values()];
    const record = JSON.stringify({ url: this.advertise, pid: process.pid });
    try {
      for (let i = 0; i === 0 || i < held.length; i += RENEW_BATCH) {
        const batch = held.slice(i, i + RENEW_BATCH);
        const kept: number[] = await this.run(
          "renew",
          [this.key("node", this.nodeId), ...batch.map((l) => this.key("lease", l.actorId))],
          [this.leaseMs, record, this.leaseMs * 2, ...batch.map((l) => l.value)],
        );
        batch.forEach((lease, j) => {
          if (Number(kept[j]) === 1) lease.validUntil = Math.max(lease.validUntil, sent + this.leaseMs - this.margin);
          else this.lose(lease, "expired");
        });
      }
      this.confirmedUntil = sent + this.leaseMs - this.margin;
    } catch (err) {
      if (this.healthy()) this.logger.warn({ err }, "redisCluster: cannot reach Redis; leases lapse unless it answers in time");
      // Unhealthy at once: no new placement until Redis answers again.
      this.confirmedUntil = 0;
    }
    this.armLapse();
  }

  private lose(lease: HeldLease, cause: LeaseLossCause) {
    // A lease released meanwhile (sleep) is no loss, and a newer lease on the same actor is not this one.
    if (lease.lost) return;
    lease.lost = true;
    if (this.leases.get(lease.actorId) === lease) this.leases.delete(lease.actorId);
    this.host?.leaseLost(lease.actorId, lease, cause);
  }

  /** Drops, at the moment it lapses, each lease that was not confirmed in time. */
  private armLapse() {
    clearTimeout(this.lapseTimer);
    let next = Infinity;
    for (const lease of this.leases.values()) next = Math.min(next, lease.validUntil);
    if (next === Infinity || this.closed) return;
    this.lapseTimer = setTimeout(() => {
      const now = performance.now();
      for (const lease of [...this.leases.values()]) if (lease.validUntil <= now) this.lose(lease, "lapsed");
      this.armLapse();
    }, Math.max(0, next - performance.now()));
    this.lapseTimer.unref();
  }

  /** EVALSHA (EVAL when Redis lost its script cache), bounded so a silent Redis cannot hold a request. */
  private async run(name: ScriptName, keys: string[], args: Array<string | number>): Promise<any> {
    const call = async () => {
      try {
        return await this.client.evalsha(SHAS[name], keys.length, ...keys, ...args);
      } catch (err) {
        if (!String((err as Error).message).startsWith("NOSCRIPT")) throw err;
        return this.client.eval(SCRIPTS[name], keys.length, ...keys, ...args);
      }
    };
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Redis did not answer within ${this.timeout} ms`)), this.timeout);
    });
    try {
      return await Promise.race([call(), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  close(): Promise<void> {
    return (this.closed ??= this.leave());
  }

  private async leave() {
    clearInterval(this.heartbeat);
    clearTimeout(this.lapseTimer);
    for (const lease of [...this.leases.values()]) this.release(lease.actorId, lease);
    await Promise.allSettled([...this.releases]);
    await Promise.race([this.client.del(this.key("node", this.nodeId)), delay(this.timeout)]).catch(() => {});
    this.forwarder.close();
    if (this.ownsClient) this.client.disconnect();
  }
}

function ownClient(url: string, logger: () => Logger): Redis {
  const { Redis } = loadDriver<typeof import("ioredis")>("ioredis", "redisCluster");
  // No offline queue: while Redis is away a call fails at once (503) instead of waiting to be replayed.
  const client = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, retryStrategy: (n) => Math.min(100 * n, 1000) });
  let warned = false;
  client.on("error", (err) => {
    if (!warned) logger().warn({ err }, "redisCluster: Redis connection error");
    warned = true;
  });
  client.on("ready", () => (warned = false));
  return client;
}

function parseRecord(text: string): { url?: string } | undefined {
  try {
    const record = JSON.parse(text);
    return typeof record?.url === "string" ? record : undefined;
  } catch {
    return undefined;
  }
}

function parseUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

function delay(ms: number) {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
