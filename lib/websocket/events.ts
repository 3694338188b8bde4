/** Node 20 has Event and MessageEvent but no CloseEvent; this one follows the DOM's shape. */
class CloseEventPolyfill extends Event {
  readonly code: number;
  readonly reason: string;
  readonly wasClean: boolean;

  constructor(type: string, init: CloseEventInit = {}) {
    super(type, init);
    this.code = init.code ?? 0;
    this.reason = init.reason ?? "";
    this.wasClean = init.wasClean ?? false;
  }

  get [Symbol.toStringTag]() {
    return "CloseEvent";
  }
}

export const CloseEventImpl: typeof CloseEvent =
  (globalThis as { CloseEvent?: typeof CloseEvent }).CloseEvent ?? (CloseEventPolyfill as unknown as typeof CloseEvent);
