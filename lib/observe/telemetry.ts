import { checkLogger, log, type Logger } from "../log";

/** What setup() takes to make actors observable; each part is optional and off by default. */
export interface TelemetryOptions {
  /** A pino-compatible logger; default: console lines with the same fields. */
  logger?: Logger;
}

/** A registry's logging, metrics and tracing, as its parts read them. */
export interface Telemetry {
  /** The registry's logger; each actor logs through a child of it carrying `actor` and `actorId`. */
  readonly log: Logger;
}

export const NO_TELEMETRY: Telemetry = { log };

/**
 * Checked once, at setup. `node` is this process's name in a cluster: every line then carries it.
 * (The cluster's node id is passed here once lib/cluster lands.)
 */
export function createTelemetry(options: TelemetryOptions, node?: string): Telemetry {
  const base = options.logger === undefined ? log : checkLogger(options.logger);
  return { log: node === undefined ? base : base.child({ node }) };
}
