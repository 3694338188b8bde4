import { log } from "../log";
import { CloseEventImpl } from "./events";

/** What a W3C socket drives underneath: a `ws` socket on the server, or the other end of an in-process pair. */
export interface SocketTransport {
  send(data: Uint8Array | string, binary: boolean, done: (err?: Error) => void): void;
  /** Starts the closing handshake; code undefined sends a close frame without a code. */
  close(code?: number, reason?: string): void;
  /** Stops reading from the network (backpressure); a transport without it is never paused. */
  pause?(): void;
  resume?(): void;
}

/** The calls a transport makes into its socket; reachable only through the DRIVER symbol. */
export interface SocketDriver {
  opened(protocol: string, extensions: string): void;
  message(data: Uint8Array | string, binary: boolean): void;
  error(): void;
  closed(code: number, reason: string, wasClean: boolean): void;
  /** Dispatches `open` and then any events that arrived before (server sockets start OPEN but hold events). */
  start(): void;
  /** Closes without the public validation, for library codes such as 4404 or 1011. */
  fail(code: number, reason: string): void;
  /** Stops and restarts reading from the transport: a relay's backpressure. */
  pause(): void;
  resume(): void;
  /** Calls `done` once, as soon as bufferedAmount is at most `below` (at once if it already is). */
  whenDrained(below: number, done: () => void): void;
}

export interface SocketInit {
  url: string;
  transport: SocketTransport;
  /** Server sockets are OPEN from the start and hold their events until start(). */
  open?: { protocol: string; extensions: string };
  binaryType: BinaryType;
  /** Called when a listener or handler throws; the socket is closed with 1011 afterwards. */
  onListenerError?: (err: unknown) => void;
  /** Past this many messages or bytes held before start(), the transport is paused until start(). */
  maxHeld?: { messages: number; bytes: number };
}

export const DRIVER = Symbol("express-actors.socketDriver");

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;
/** Codes a server may use besides the standard's 1000 and 3000–4999. */
const SERVER_CODES = new Set([1001, 1008, 1011]);
const MAX_REASON_BYTES = 123;

type Handler = ((this: unknown, event: Event) => unknown) | { handleEvent(event: Event): unknown };
type EventName = "open" | "message" | "error" | "close";

/** USVString conversion: lone surrogates become U+FFFD (String.prototype.toWellFormed, Node ≥ 20). */
type WellFormed = string & { isWellFormed(): boolean; toWellFormed(): string };
// The check allocates nothing; almost every string sent is already well formed.
const toUSV = (value: string): string =>
  (value as WellFormed).isWellFormed() ? value : (value as WellFormed).toWellFormed();

/** WebIDL [Clamp] unsigned short. */
function clampCode(value: unknown): number {
  let n = Number(value);
  if (Number.isNaN(n)) return 0;
  n = Math.min(Math.max(n, 0), 65535);
  const floor = Math.floor(n);
  const diff = n - floor;
  if (diff > 0.5 || (diff === 0.5 && floor % 2 === 1)) return floor + 1;
  return floor;
}

/** A W3C WebSocket over a transport: events, close validation, ordered sends and a real bufferedAmount. */
export class W3CWebSocket extends EventTarget {
  declare static readonly CONNECTING: 0;
  declare static readonly OPEN: 1;
  declare static readonly CLOSING: 2;
  declare static readonly CLOSED: 3;
  declare readonly CONNECTING: 0;
  declare readonly OPEN: 1;
  declare readonly CLOSING: 2;
  declare readonly CLOSED: 3;

  #url: string;
  #transport: SocketTransport;
  #readyState: number;
  #protocol = "";
  #extensions = "";
  #binaryType: BinaryType;
  #bufferedAmount = 0;
  #inFlight: number[] = [];
  #inFlightHead = 0;
  #held: Array<() => void> | undefined;
  #heldBytes = 0;
  #maxHeld: { messages: number; bytes: number } | undefined;
  #pausedWhileHeld = false;
  #sendQueue: Array<() => unknown> | undefined;
  #transportClosed = false;
  #wrapped = new WeakMap<object, Map<string, EventListener>>();
  #attributes: Partial<Record<EventName, { handler: Function | null; listener: EventListener }>> = {};
  #origin: string;
  #onListenerError?: (err: unknown) => void;
  #failed = false;
  #drained: { below: number; done: () => void } | undefined;

  constructor(init: SocketInit) {
    super();
    this.#url = init.url;
    this.#transport = init.transport;
    this.#binaryType = init.binaryType;
    this.#onListenerError = init.onListenerError;
    this.#maxHeld = init.maxHeld;
    this.#origin = new URL(init.url).origin.replace(/^http/, "ws");
    if (init.open) {
      this.#readyState = OPEN;
      this.#protocol = init.open.protocol;
      this.#extensions = init.open.extensions;
      this.#held = [];
    } else {
      this.#readyState = CONNECTING;
    }
    Object.defineProperty(this, DRIVER, { value: this.#driver(), enumerable: false });
  }

  get url() {
    return this.#url;
  }
  get readyState() {
    return this.#readyState;
  }
  get protocol() {
    return this.#protocol;
  }
  get extensions() {
    return this.#extensions;
  }
  get bufferedAmount() {
    return this.#bufferedAmount;
  }
  get binaryType(): BinaryType {
    return this.#binaryType;
  }
  set binaryType(value: BinaryType) {
    if (value === "blob" || value === "arraybuffer") this.#binaryType = value;
  }

  get onopen() {
    return this.#attribute("open");
  }
  set onopen(value) {
    this.#setAttribute("open", value);
  }
  get onmessage() {
    return this.#attribute("message");
  }
  set onmessage(value) {
    this.#setAttribute("message", value);
  }
  get onerror() {
    return this.#attribute("error");
  }
  set onerror(value) {
    this.#setAttribute("error", value);
  }
  get onclose() {
    return this.#attribute("close");
  }
  set onclose(value) {
    this.#setAttribute("close", value);
  }

  send(data: string | ArrayBufferLike | ArrayBufferView | Blob): void {
    if (this.#readyState === CONNECTING) throw new DOMException("The socket is still connecting", "InvalidStateError");
    let payload: Uint8Array | string | Blob;
    let size: number;
    let binary = true;
    // Bytes are copied: the caller may reuse its buffer before a queued or backed-up frame is written.
    if (typeof data === "string") {
      payload = toUSV(data);
      size = Buffer.byteLength(payload);
      binary = false;
    } else if (data instanceof ArrayBuffer) {
      payload = new Uint8Array(data.slice(0));
      size = data.byteLength;
    } else if (ArrayBuffer.isView(data)) {
      if (data.buffer instanceof SharedArrayBuffer) throw new TypeError("send() does not accept a SharedArrayBuffer view");
      payload = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
      size = data.byteLength;
    } else if (typeof Blob !== "undefined" && data instanceof Blob) {
      payload = data;
      size = data.size;
    } else if (typeof SharedArrayBuffer !== "undefined" && data instanceof SharedArrayBuffer) {
      throw new TypeError("send() does not accept a SharedArrayBuffer");
    } else {
      payload = toUSV(String(data));
      size = Buffer.byteLength(payload);
      binary = false;
    }
    this.#bufferedAmount += size;
    if (this.#readyState !== OPEN) return;
    if (payload instanceof Blob || this.#sendQueue) {
      const blob = payload;
      this.#enqueueSend(async () => {
        this.#write(blob instanceof Blob ? new Uint8Array(await blob.arrayBuffer()) : blob, binary, size);
      });
      return;
    }
    this.#write(payload, binary, size);
  }

  #write(bytes: Uint8Array | string, binary: boolean, size: number) {
    // A queued frame whose socket failed meanwhile stays counted, as after close().
    if (this.#transportClosed) return;
    this.#inFlight.push(size);
    this.#transport.send(bytes, binary, this.#written);
  }

  /**
   * Transports call back once per frame, in send order: one shared callback and a FIFO of sizes
   * cost less than a closure per send.
   */
  #written = (err?: Error) => {
    const size = this.#inFlight[this.#inFlightHead++];
    if (this.#inFlightHead === this.#inFlight.length) {
      this.#inFlight.length = 0;
      this.#inFlightHead = 0;
    }
    if (!err) this.#bufferedAmount -= size;
    const drained = this.#drained;
    if (drained !== undefined && this.#bufferedAmount <= drained.below) {
      this.#drained = undefined;
      drained.done();
    }
  };

  /**
   * Blob reads are async; everything sent after one, and a close() behind it, waits its turn so
   * order is kept. Queued work still runs while CLOSING (it was accepted while OPEN).
   */
  #enqueueSend(task: () => unknown) {
    if (this.#sendQueue) {
      this.#sendQueue.push(task);
      return;
    }
    this.#sendQueue = [task];
    const run = async () => {
      while (this.#sendQueue && this.#sendQueue.length > 0) {
        const next = this.#sendQueue[0];
        try {
          if (this.#readyState !== CLOSED) await next();
        } catch (err) {
          log.error({ err }, "a Blob could not be read for send()");
        }
        this.#sendQueue.shift();
      }
      this.#sendQueue = undefined;
    };
    void run();
  }

  #closeTransport(code?: number, reason?: string) {
    if (this.#transportClosed) return;
    this.#transportClosed = true;
    // The closing handshake needs the peer's close frame; messages are ignored from CLOSING on.
    this.#resumeHeld();
    this.#transport.close(code, reason);
  }

  #resumeHeld() {
    if (!this.#pausedWhileHeld) return;
    this.#pausedWhileHeld = false;
    this.#transport.resume?.();
  }

  close(code?: number, reason?: string): void {
    let validCode: number | undefined;
    if (code !== undefined) {
      validCode = clampCode(code);
      if (!(validCode === 1000 || (validCode >= 3000 && validCode <= 4999) || SERVER_CODES.has(validCode))) {
        throw new DOMException(`Invalid close code ${String(code)}`, "InvalidAccessError");
      }
    }
    let text: string | undefined;
    if (reason !== undefined) {
      text = toUSV(String(reason));
      if (Buffer.byteLength(text) > MAX_REASON_BYTES) {
        throw new DOMException("The close reason must be at most 123 UTF-8 bytes", "SyntaxError");
      }
    }
    if (this.#readyState === CLOSING || this.#readyState === CLOSED) return;
    this.#readyState = CLOSING;
    const close = () =>
      validCode === undefined && text === undefined
        ? this.#closeTransport()
        : this.#closeTransport(validCode ?? 1000, text ?? "");
    if (this.#sendQueue) this.#enqueueSend(close);
    else close();
  }

  override addEventListener(type: string, listener: Handler | null, options?: boolean | AddEventListenerOptions) {
    if (listener === null || listener === undefined) return;
    super.addEventListener(type, this.#wrap(type, listener, capture(options)), options);
  }

  override removeEventListener(type: string, listener: Handler | null, options?: boolean | EventListenerOptions) {
    if (listener === null || listener === undefined) return;
    const wrapped = this.#wrapped.get(listener)?.get(type + ":" + capture(options));
    // Node removes a listener whose `signal` aborted by calling this with the wrapper itself.
    super.removeEventListener(type, wrapped ?? (listener as EventListener), options);
  }

  /** Same wrapper for the same (listener, type, capture), so dedupe and removal work as in the DOM. */
  #wrap(type: string, listener: Handler, useCapture: boolean): EventListener {
    let byType = this.#wrapped.get(listener);
    if (!byType) this.#wrapped.set(listener, (byType = new Map()));
    const id = type + ":" + useCapture;
    let wrapped = byType.get(id);
    if (!wrapped) {
      const guard = this.#guard;
      const target = this;
      wrapped = function (this: unknown, event: Event) {
        guard(event, target, listener, this);
      };
      byType.set(id, wrapped);
    }
    return wrapped;
  }

  /**
   * A throwing or rejecting listener closes this socket with 1011 instead of crashing the process.
   * Node 20 also clears currentTarget and eventPhase after the first listener of a dispatch; the
   * others get them back as own properties for the duration of their call.
   */
  #guard = (event: Event, target: EventTarget, listener: Handler, thisArg: unknown) => {
    const patched = event.currentTarget !== target;
    if (patched) {
      Object.defineProperty(event, "currentTarget", { value: target, configurable: true });
      Object.defineProperty(event, "eventPhase", { value: Event.AT_TARGET, configurable: true });
    }
    try {
      const result = typeof listener === "function" ? listener.call(thisArg, event) : listener.handleEvent(event);
      if (result && typeof (result as Promise<unknown>).then === "function") {
        (result as Promise<unknown>).then(undefined, this.#listenerFailed);
      }
    } catch (err) {
      this.#listenerFailed(err);
    } finally {
      if (patched) {
        delete (event as { currentTarget?: unknown }).currentTarget;
        delete (event as { eventPhase?: unknown }).eventPhase;
      }
    }
  };

  #listenerFailed = (err: unknown) => {
    if (this.#onListenerError) this.#onListenerError(err);
    else log.error({ err }, "a WebSocket listener threw");
    this.#fail(1011, "internal_error");
  };

  #attribute(type: EventName) {
    return this.#attributes[type]?.handler ?? null;
  }

  /** The attribute keeps the listener slot of its first assignment; null removes it (HTML event handler rules). */
  #setAttribute(type: EventName, value: unknown) {
    const handler = typeof value === "function" ? value : null;
    const slot = this.#attributes[type];
    if (handler === null) {
      if (slot) {
        super.removeEventListener(type, slot.listener);
        delete this.#attributes[type];
      }
      return;
    }
    if (slot) {
      slot.handler = handler;
      return;
    }
    const entry = {
      handler: handler as Function | null,
      listener: ((event: Event) => {
        const current = entry.handler;
        if (current) this.#guard(event, this, current as Handler, this);
      }) as EventListener,
    };
    this.#attributes[type] = entry;
    super.addEventListener(type, entry.listener);
  }

  #dispatchMessage(data: Uint8Array | string, binary: boolean) {
    // Held messages are dropped too if the socket was closed before they could be dispatched.
    if (this.#readyState !== OPEN) return;
    let value: unknown = data;
    if (binary) {
      const bytes = typeof data === "string" ? Buffer.from(data) : data;
      value =
        this.#binaryType === "blob"
          ? new Blob([bytes as Uint8Array<ArrayBuffer>])
          : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    } else if (typeof data !== "string") {
      value = (Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength)).toString("utf8");
    }
    this.dispatchEvent(new MessageEvent("message", { data: value, origin: this.#origin }));
  }

  /** Queues a message that came before start(); past maxHeld the transport stops reading until start(). */
  #hold(data: Uint8Array | string, binary: boolean) {
    const held = this.#held!;
    held.push(() => this.#dispatchMessage(data, binary));
    const limit = this.#maxHeld;
    if (!limit || this.#pausedWhileHeld || this.#transportClosed) return;
    this.#heldBytes += typeof data === "string" ? Buffer.byteLength(data) : data.byteLength;
    if (held.length >= limit.messages || this.#heldBytes >= limit.bytes) {
      this.#pausedWhileHeld = true;
      this.#transport.pause?.();
    }
  }

  #emit(dispatch: () => void) {
    if (this.#held) this.#held.push(dispatch);
    else dispatch();
  }

  /** Library codes skip the queue: a failed socket has nothing more worth sending. */
  #fail(code: number, reason: string) {
    if (this.#readyState === CLOSING || this.#readyState === CLOSED) return;
    this.#readyState = CLOSING;
    this.#closeTransport(code, reason);
  }

  #driver(): SocketDriver {
    return {
      opened: (protocol, extensions) => {
        if (this.#readyState !== CONNECTING) return;
        this.#readyState = OPEN;
        this.#protocol = protocol;
        this.#extensions = extensions;
        this.dispatchEvent(new Event("open"));
      },
      message: (data, binary) => {
        if (this.#readyState !== OPEN) return;
        // The common case dispatches at once, without a closure per message.
        if (this.#held) this.#hold(data, binary);
        else this.#dispatchMessage(data, binary);
      },
      error: () => {
        if (this.#failed) return;
        this.#failed = true;
        this.#emit(() => this.dispatchEvent(new Event("error")));
      },
      closed: (code, reason, wasClean) => {
        if (this.#readyState === CLOSED) return;
        if (!wasClean && !this.#failed) {
          this.#failed = true;
          this.#emit(() => this.dispatchEvent(new Event("error")));
        }
        const finish = () => {
          this.#readyState = CLOSED;
          this.dispatchEvent(new CloseEventImpl("close", { code, reason, wasClean }));
        };
        if (this.#held) this.#held.push(finish);
        else finish();
      },
      start: () => {
        const held = this.#held;
        if (!held) return;
        this.#held = undefined;
        this.dispatchEvent(new Event("open"));
        for (const dispatch of held) dispatch();
        this.#resumeHeld();
      },
      fail: (code, reason) => this.#fail(code, reason),
      pause: () => this.#transport.pause?.(),
      resume: () => this.#transport.resume?.(),
      whenDrained: (below, done) => {
        if (this.#bufferedAmount <= below) done();
        else this.#drained = { below, done };
      },
    };
  }
}

function capture(options: boolean | EventListenerOptions | undefined): boolean {
  return typeof options === "boolean" ? options : Boolean(options?.capture);
}

for (const target of [W3CWebSocket, W3CWebSocket.prototype]) {
  Object.defineProperties(target, {
    CONNECTING: { value: CONNECTING, enumerable: true },
    OPEN: { value: OPEN, enumerable: true },
    CLOSING: { value: CLOSING, enumerable: true },
    CLOSED: { value: CLOSED, enumerable: true },
  });
}

export function driverOf(socket: W3CWebSocket): SocketDriver {
  return (socket as unknown as Record<symbol, SocketDriver>)[DRIVER];
}
