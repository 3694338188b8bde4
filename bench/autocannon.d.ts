// The part of autocannon's API bench/ uses (the package ships no types).
declare module "autocannon" {
  interface Result {
    requests: { average: number; total: number };
    errors: number;
    timeouts: number;
    non2xx: number;
  }
  interface Options {
    url: string;
    connections?: number;
    /** Seconds. */
    duration?: number;
    headers?: Record<string, string>;
    /** A run before the measured one, whose responses are neither counted nor reported. */
    warmup?: { duration: number };
  }
  /** Resolves with the result; emits "response" for each measured response. */
  interface Instance extends PromiseLike<Result> {
    /** `responseTime` is in milliseconds, with sub-millisecond precision (the result's histogram has 1 ms). */
    on(
      event: "response",
      listener: (client: unknown, statusCode: number, resBytes: number, responseTime: number) => void,
    ): this;
  }
  function autocannon(options: Options): Instance;
  export = autocannon;
}
