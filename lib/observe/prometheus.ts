import { loadDriver } from "../stores/driver";
import type { Instruments } from "./instruments";

/** The part of a prom-client `Registry` this needs; `new Registry()` and the default `register` fit it. */
export interface PromRegistry {
  registerMetric(metric: any): void;
  getSingleMetric(name: string): unknown;
  metrics(): Promise<string>;
}

export function isPromRegistry(value: any): value is PromRegistry {
  return typeof value?.registerMetric === "function" && typeof value?.getSingleMetric === "function";
}

/** Instruments registered in `registry`; prom-client (an optional peer dependency) loads only here. */
export function promInstruments(registry: PromRegistry): Instruments {
  const prom = loadDriver<typeof import("prom-client")>("prom-client", "setup({ metrics })");
  const registers = [registry as unknown as import("prom-client").Registry];
  return {
    counter: ({ name, help, labels }) => {
      const counter = new prom.Counter({ name, help, labelNames: labels, registers });
      return { add: (values, value = 1) => counter.inc(values, value) };
    },
    histogram: ({ name, help, labels, buckets }) => {
      const histogram = new prom.Histogram({ name, help, labelNames: labels, buckets, registers });
      return { observe: (values, value) => histogram.observe(values, value) };
    },
    gauge: ({ name, help, labels }) => {
      const gauge = new prom.Gauge({ name, help, labelNames: labels, registers });
      return { add: (values, delta) => gauge.inc(values, delta) };
    },
    collected: ({ name, help, labels }, read) => {
      const [label] = labels;
      const gauge: import("prom-client").Gauge = new prom.Gauge({
        name,
        help,
        labelNames: labels,
        registers,
        collect() {
          gauge.reset();
          for (const [value, count] of read()) gauge.set({ [label]: value }, count);
        },
      });
    },
  };
}
