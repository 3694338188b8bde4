import type { LeaseLossCause } from "../cluster/types";
import type { CounterInstrument, GaugeInstrument, HistogramInstrument, Instruments } from "./instruments";

const SECONDS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const SOCKET_SECONDS = [1, 5, 15, 60, 300, 900, 3600, 14400];
const BYTES = [100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000];

/** How a forwarding hop ended: the owner's status class, or no answer. */
export type HopOutcome = "2xx" | "3xx" | "4xx" | "5xx" | "unreachable" | "cancelled";

/** The store calls a save, load, lookup… counts as; `connection` is a store's own connection failure. */
export type StoreOperation = "create" | "lookup" | "load" | "save" | "delete" | "close" | "connection";

/**
 * The figures of issue 15, on whichever backend the `metrics` option chose. One set per backend
 * object, shared by every registry that passes it: two registries add up, as two routers would.
 */
export class ActorMetrics {
  private readonly sources = new Set<() => Map<string, number>>();
  private readonly activations: CounterInstrument;
  private readonly sleeps: CounterInstrument;
  private readonly fetches: HistogramInstrument;
  private readonly sockets: CounterInstrument;
  private readonly openSockets: GaugeInstrument;
  private readonly socketLifetimes: HistogramInstrument;
  private readonly saves: CounterInstrument;
  private readonly saveSeconds: HistogramInstrument;
  private readonly saveBytes: HistogramInstrument;
  private readonly storeErrors: CounterInstrument;
  private readonly forwards: CounterInstrument;
  private readonly hopSeconds: HistogramInstrument;
  private readonly relays: CounterInstrument;
  private readonly acquisitions: CounterInstrument;
  private readonly takeovers: CounterInstrument;
  private readonly losses: CounterInstrument;

  constructor(make: Instruments) {
    make.collected(
      { name: "express_actors_live_actors", help: "Actors active in this process, by actor name", labels: ["actor"] },
      () => this.liveByName(),
    );
    this.activations = make.counter({
      name: "express_actors_activations_total",
      help: "Actors started (created, or woken from the store)",
      labels: ["actor"],
    });
    this.sleeps = make.counter({ name: "express_actors_sleeps_total", help: "Actors that went to sleep", labels: ["actor"] });
    this.fetches = make.histogram({
      name: "express_actors_fetch_duration_seconds",
      help: "onFetch calls until the response is ready (state saved), by actor name and status class",
      labels: ["actor", "status_class"],
      unit: "s",
      buckets: SECONDS,
    });
    this.sockets = make.counter({
      name: "express_actors_websocket_connections_total",
      help: "WebSockets handed to onWebSocket",
      labels: ["actor"],
    });
    this.openSockets = make.gauge({ name: "express_actors_websockets_open", help: "WebSockets open now", labels: ["actor"] });
    this.socketLifetimes = make.histogram({
      name: "express_actors_websocket_duration_seconds",
      help: "How long closed WebSockets were open, by actor name and close code (3xxx and 4xxx grouped)",
      labels: ["actor", "close_code"],
      unit: "s",
      buckets: SOCKET_SECONDS,
    });
    this.saves = make.counter({
      name: "express_actors_state_saves_total",
      help: "State saves by result: ok, error (the store failed) or fenced (another owner took over)",
      labels: ["actor", "result"],
    });
    this.saveSeconds = make.histogram({
      name: "express_actors_state_save_duration_seconds",
      help: "How long successful state saves took",
      labels: ["actor"],
      unit: "s",
      buckets: SECONDS,
    });
    this.saveBytes = make.histogram({
      name: "express_actors_state_save_bytes",
      help: "Size of the saved states (JSON text)",
      labels: ["actor"],
      unit: "By",
      buckets: BYTES,
    });
    this.storeErrors = make.counter({
      name: "express_actors_store_errors_total",
      help: "Store calls that failed, by operation (connection: the store's own connection failures)",
      labels: ["operation"],
    });
    this.forwards = make.counter({
      name: "express_actors_cluster_forwarded_requests_total",
      help: "Requests this node forwarded to the owning node, by outcome: the owner's status class, unreachable or cancelled",
      labels: ["actor", "outcome"],
    });
    this.hopSeconds = make.histogram({
      name: "express_actors_cluster_forward_duration_seconds",
      help: "Forwarded requests, from leaving this node until the owner's response head arrived (the owner's onFetch included)",
      labels: ["actor"],
      unit: "s",
      buckets: SECONDS,
    });
    this.relays = make.counter({
      name: "express_actors_cluster_relayed_websockets_total",
      help: "WebSockets this node relayed to the owning node, by outcome: opened, unreachable or cancelled (a shutdown came first)",
      labels: ["actor", "outcome"],
    });
    this.acquisitions = make.counter({
      name: "express_actors_cluster_lease_acquisitions_total",
      help: "Actor leases this node took",
      labels: ["actor"],
    });
    this.takeovers = make.counter({
      name: "express_actors_cluster_takeovers_total",
      help: "Leases this node took whose previous holder, another node, never released them (it crashed, froze or lost Redis)",
      labels: ["actor"],
    });
    this.losses = make.counter({
      name: "express_actors_cluster_lease_losses_total",
      help: "Actors this node stopped serving because their lease was lost: expired, lapsed (not renewed in time) or fenced",
      labels: ["actor", "cause"],
    });
  }

  /** `live` counts one registry's live actors by name (0 for a name with none, so the series stays). */
  addSource(live: () => Map<string, number>) {
    this.sources.add(live);
  }

  private liveByName(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const source of this.sources) for (const [name, n] of source()) counts.set(name, (counts.get(name) ?? 0) + n);
    return counts;
  }

  activated(actor: string) {
    this.activations.add({ actor });
  }

  slept(actor: string) {
    this.sleeps.add({ actor });
  }

  fetched(actor: string, status: number, seconds: number) {
    this.fetches.observe({ actor, status_class: `${Math.floor(status / 100)}xx` }, seconds);
  }

  socketOpened(actor: string) {
    this.sockets.add({ actor });
    this.openSockets.add({ actor }, 1);
  }

  socketClosed(actor: string, code: number, seconds: number) {
    this.openSockets.add({ actor }, -1);
    this.socketLifetimes.observe({ actor, close_code: closeCodeLabel(code) }, seconds);
  }

  saved(actor: string, bytes: number, seconds: number) {
    this.saves.add({ actor, result: "ok" });
    this.saveSeconds.observe({ actor }, seconds);
    this.saveBytes.observe({ actor }, bytes);
  }

  saveFailed(actor: string, fenced: boolean) {
    this.saves.add({ actor, result: fenced ? "fenced" : "error" });
  }

  storeFailed(operation: StoreOperation) {
    this.storeErrors.add({ operation });
  }

  /** `seconds` only for a hop the owner answered. */
  forwarded(actor: string, outcome: HopOutcome, seconds: number | undefined) {
    this.forwards.add({ actor, outcome });
    if (seconds !== undefined) this.hopSeconds.observe({ actor }, seconds);
  }

  relayed(actor: string, outcome: "opened" | "unreachable" | "cancelled") {
    this.relays.add({ actor, outcome });
  }

  leaseAcquired(actor: string, takeover: boolean) {
    this.acquisitions.add({ actor });
    if (takeover) this.takeovers.add({ actor });
  }

  leaseLost(actor: string, cause: LeaseLossCause) {
    this.losses.add({ actor, cause });
  }
}

/** The protocol's codes as they are; application codes (3000–4999, any number of them) by thousand. */
function closeCodeLabel(code: number): string {
  return code >= 3000 ? `${Math.floor(code / 1000)}xxx` : String(code);
}
