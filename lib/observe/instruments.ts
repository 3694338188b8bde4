/** Label values by label name; every label set has bounded values (never an actor key or id). */
export type Labels = Record<string, string>;

export interface CounterInstrument {
  add(labels: Labels, value?: number): void;
}

export interface HistogramInstrument {
  observe(labels: Labels, value: number): void;
}

export interface GaugeInstrument {
  add(labels: Labels, delta: number): void;
}

export interface InstrumentSpec {
  /** Prometheus style: express_actors_…_total, _seconds, _bytes. */
  name: string;
  help: string;
  labels: string[];
  /** OpenTelemetry's unit ("s", "By", "1"). */
  unit?: string;
}

/** What a metrics backend (prom-client, an OpenTelemetry meter) makes; see ./prometheus and ./otel-metrics. */
export interface Instruments {
  counter(spec: InstrumentSpec): CounterInstrument;
  histogram(spec: InstrumentSpec & { buckets: number[] }): HistogramInstrument;
  gauge(spec: InstrumentSpec): GaugeInstrument;
  /** A gauge read when scraped; `read` adds each source's counts by label value. */
  collected(spec: InstrumentSpec & { labels: [string] }, read: () => Map<string, number>): void;
}
