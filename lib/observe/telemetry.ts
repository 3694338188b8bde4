import { checkLogger, log, type Logger } from "../log";
import { ActorMetrics } from "./metrics";
import { Observer } from "./observer";
import { otelInstruments, isMeter, type MeterLike } from "./otel-metrics";
import { isPromRegistry, promInstruments, type PromRegistry } from "./prometheus";
import { Tracing, type TracerLike } from "./tracing";

/** What setup() takes to make actors observable; each part is optional and off by default. */
export interface TelemetryOptions {
  /** A pino-compatible logger; default: console lines with the same fields. */
  logger?: Logger;
  /** A prom-client `Registry` (e.g. its default `register`), or an OpenTelemetry `Meter`. */
  metrics?: PromRegistry | MeterLike;
  /** OpenTelemetry spans: `true` for the global tracer provider's "express-actors" tracer, or a `Tracer`. */
  tracing?: true | TracerLike;
}

/** A registry's logging, metrics and tracing, as its parts read them. */
export interface Telemetry {
  /** The registry's logger; each actor logs through a child of it carrying `actor` and `actorId`. */
  readonly log: Logger;
  /** Present only when metrics or tracing are on: call sites test this one field. */
  readonly observer?: Observer;
}

export const NO_TELEMETRY: Telemetry = { log };

/** One set of instruments per backend object, however many registries report to it. */
const shared = new WeakMap<object, ActorMetrics>();

function metricsFor(backend: unknown): ActorMetrics {
  let metrics = shared.get(backend as object);
  if (metrics) return metrics;
  if (isPromRegistry(backend)) metrics = new ActorMetrics(promInstruments(backend));
  else if (isMeter(backend)) metrics = new ActorMetrics(otelInstruments(backend));
  else throw new TypeError("setup(): `metrics` must be a prom-client Registry or an OpenTelemetry Meter");
  shared.set(backend as object, metrics);
  return metrics;
}

/**
 * Checked once, at setup. `names` are the registry's actor names; `node` is this process's name in
 * a cluster (its advertised URL, which the other nodes' "forwarding to … failed" lines also name),
 * and every line then carries it.
 */
export function createTelemetry(options: TelemetryOptions, names: string[], node?: string): Telemetry {
  const base = options.logger === undefined ? log : checkLogger(options.logger);
  const logger = node === undefined ? base : base.child({ node });
  if (options.tracing !== undefined && options.tracing !== true && typeof options.tracing?.startSpan !== "function") {
    throw new TypeError("setup(): `tracing` must be true or an OpenTelemetry Tracer");
  }
  const metrics = options.metrics === undefined ? undefined : metricsFor(options.metrics);
  const tracing = options.tracing === undefined ? undefined : new Tracing(options.tracing);
  if (!metrics && !tracing) return { log: logger };
  return { log: logger, observer: new Observer(metrics, tracing, names) };
}
