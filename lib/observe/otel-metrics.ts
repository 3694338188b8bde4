import type { Instruments } from "./instruments";

type Attributes = Record<string, string>;

/** The part of an OpenTelemetry `Meter` this needs: `metrics.getMeter("express-actors")` fits it. */
export interface MeterLike {
  createCounter(name: string, options?: object): { add(value: number, attributes?: Attributes): void };
  createHistogram(name: string, options?: object): { record(value: number, attributes?: Attributes): void };
  createUpDownCounter(name: string, options?: object): { add(value: number, attributes?: Attributes): void };
  createObservableGauge(
    name: string,
    options?: object,
  ): { addCallback(callback: (result: { observe(value: number, attributes?: Attributes): void }) => void): void };
}

export function isMeter(value: any): value is MeterLike {
  return typeof value?.createCounter === "function" && typeof value?.createHistogram === "function";
}

/** Instruments on an OpenTelemetry meter; the names are the Prometheus ones, so dashboards fit both. */
export function otelInstruments(meter: MeterLike): Instruments {
  return {
    counter: ({ name, help, unit }) => {
      const counter = meter.createCounter(name, { description: help, unit });
      return { add: (labels, value = 1) => counter.add(value, labels) };
    },
    histogram: ({ name, help, unit, buckets }) => {
      const histogram = meter.createHistogram(name, { description: help, unit, advice: { explicitBucketBoundaries: buckets } });
      return { observe: (labels, value) => histogram.record(value, labels) };
    },
    gauge: ({ name, help, unit }) => {
      const gauge = meter.createUpDownCounter(name, { description: help, unit });
      return { add: (labels, delta) => gauge.add(delta, labels) };
    },
    collected: ({ name, help, labels }, read) => {
      const [label] = labels;
      meter.createObservableGauge(name, { description: help }).addCallback((result) => {
        for (const [value, count] of read()) result.observe(count, { [label]: value });
      });
    },
  };
}
