// The part of autocannon's API bench/ uses (the package ships no types).
declare module "autocannon" {
  interface Result {
    /** Seconds the run actually lasted (10 ms resolution). */
    duration: number;
    errors: number;
    timeouts: number;
    non2xx: number;
  }
  interface Options {
    url: string;
    connections?: number;
    /** Seconds. */
    duration?: number;
    /** Milliseconds between samples; the run's end is only noticed at a sample. */
    sampleInt?: number;
    headers?: Record<string, string>;
    /** Called once per connection as it is made. */
    setupClient?: (client: { setHeaders(headers: Record<string, string>): void }) => void;
  }
  /** Resolves with the result; emits "response" for each response. */
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
