import type { IncomingMessage, ServerResponse } from "node:http";
import { errors } from "../errors";
import { loggerOf } from "./res-logger";
import { actorPath, HEADER_CONN_PARAMS, HEADER_ENCODING, HEADER_QUERY, HEADER_QUERY_ALIAS, INTERNAL_HEADER_PREFIX } from "../protocol";

/** The X-RivetKit-* headers of a request (SPEC §2); the first of each wins. */
export interface RouterHeaders {
  query?: string;
  queryAlias?: string;
  encoding?: string;
  params?: string;
}

export interface BuiltRequest {
  request: Request;
  /** True once the streamed body went over maxBodySize. */
  readonly overflowed: boolean;
  /** Releases the socket: drains an unread body so a keep-alive connection can go on. */
  dispose(): void;
  /** A body some parser had already read, rebuilt; undefined when the body is still on the socket. */
  readonly rebuilt?: Uint8Array;
  /** Whether anyone has started reading the body from the socket (see `lazyBody`). */
  readonly bodyTouched: boolean;
  /** Whether the request can be built again from `req`: it has no body, or a parser's copy of it. */
  readonly replayable: boolean;
  /** Lets go of the request without touching its body, so another consumer (a proxy) can stream it. */
  handOver(): void;
}

type ExpressLikeRequest = IncomingMessage & {
  protocol?: string;
  app?: { get(name: string): unknown };
  body?: unknown;
  rawBody?: unknown;
  _body?: boolean;
};

const BODYLESS = new Set(["GET", "HEAD"]);
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%!$&'()*+,;=-]+)(?::\d{1,5})?$/;
const STREAM_HIGH_WATER = 64 * 1024;
const noop = () => {};

// Most header names fail the cheap test, so few are lower-cased.
const mayBeInternal = (name: string) =>
  name.length >= INTERNAL_HEADER_PREFIX.length && (name.charCodeAt(0) | 32) === 120; /* x */
const isInternal = (name: string) => mayBeInternal(name) && name.toLowerCase().startsWith(INTERNAL_HEADER_PREFIX);

/** Reads the X-RivetKit-* headers from rawHeaders. */
export function routerHeadersOf(raw: string[]): RouterHeaders {
  const rivet: RouterHeaders = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (!mayBeInternal(name)) continue;
    const lower = name.toLowerCase();
    const value = raw[i + 1];
    if (lower === HEADER_QUERY) rivet.query ??= value;
    else if (lower === HEADER_QUERY_ALIAS) rivet.queryAlias ??= value;
    else if (lower === HEADER_ENCODING) rivet.encoding ??= value;
    else if (lower === HEADER_CONN_PARAMS) rivet.params ??= value;
  }
  return rivet;
}

/**
 * Appends headers from rawHeaders to `into` (duplicates kept, order kept), holding back every
 * X-RivetKit-* one, HTTP/2 pseudo-headers and the lower-case names in `skip`.
 */
export function copyHeaders(raw: string[], into: Headers, skip?: ReadonlySet<string>): Headers {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (isInternal(name) || name.charCodeAt(0) === 58 /* : */) continue;
    if (skip?.has(name.toLowerCase())) continue;
    try {
      into.append(name, raw[i + 1]);
    } catch {
      throw errors.invalidRequest(`Header ${JSON.stringify(name)} has an invalid value`);
    }
  }
  return into;
}

/** The incoming origin, trusting X-Forwarded-* exactly as far as the app's `trust proxy` setting does. */
export function originOf(req: ExpressLikeRequest): string {
  // Without X-Forwarded-Proto, Express's req.protocol is the socket's own: skip its getter.
  // With it, Express passes the header on as sent, case included.
  const claimed = req.headers["x-forwarded-proto"] === undefined ? undefined : req.protocol?.toLowerCase();
  const protocol = claimed === "https" || claimed === "http" ? claimed : defaultProtocol(req);
  let host = req.headers.host;
  const forwarded = req.headers["x-forwarded-host"];
  if (typeof forwarded === "string" && forwarded !== "") {
    const trust = req.app?.get("trust proxy fn");
    if (typeof trust === "function" && trust(req.socket.remoteAddress, 0)) host = forwarded.split(",")[0].trim();
  }
  if (!host) host = "localhost";
  else if (!HOST.test(host)) throw errors.invalidRequest(`Invalid Host ${JSON.stringify(host)}`);
  return `${protocol}://${host}`;
}

function defaultProtocol(req: IncomingMessage): string {
  return (req.socket as { encrypted?: boolean }).encrypted ? "https" : "http";
}

/**
 * origin + actorPath: exactly one leading slash, no fragment (SPEC §2), not yet parsed: the Request
 * constructor parses it anyway, so the hot path does not parse it twice.
 */
export function actorUrlText(origin: string, pathAndSearch: string): string {
  return origin + actorPath(pathAndSearch);
}

/** actorUrlText, parsed and normalized. */
export function actorUrl(origin: string, pathAndSearch: string): string {
  try {
    return new URL(actorUrlText(origin, pathAndSearch)).href;
  } catch {
    throw badUrl();
  }
}

const badUrl = () => errors.invalidRequest("The request path cannot be parsed as a URL");

/**
 * What request.signal follows. undici takes any object with `aborted` and `addEventListener` as
 * the outer signal of a Request (it allows third-party AbortControllers) and still hands the actor
 * its own real AbortSignal, which clone(), new Request(request) and fetch(request) follow. Keeping
 * undici's one listener in a field instead of on an EventTarget saves about 15 µs per request on
 * Node 20. A probe at load checks that undici still accepts it; if not, an AbortController is used.
 */
class ClientSignal {
  aborted = false;
  reason: unknown = undefined;
  private listener: ((this: ClientSignal) => void) | undefined;

  get signal(): AbortSignal {
    return this as unknown as AbortSignal;
  }

  addEventListener(_type: "abort", listener: (this: ClientSignal) => void) {
    this.listener = listener;
  }

  removeEventListener() {
    this.listener = undefined;
  }

  // undici raises an outer signal's listener limit with events.getMaxListeners / setMaxListeners,
  // which accept an object with these methods (as they do an EventEmitter) instead of throwing.
  getMaxListeners() {
    return Infinity;
  }

  setMaxListeners() {}

  abort(reason: unknown) {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const listener = this.listener;
    this.listener = undefined;
    listener?.call(this);
  }
}

const newClientSignal: () => { readonly signal: AbortSignal; abort(reason: unknown): void } = clientSignalWorks()
  ? () => new ClientSignal()
  : () => new AbortController();

function clientSignalWorks(): boolean {
  try {
    const source = new ClientSignal();
    const request = new Request("http://localhost/", { signal: source.signal });
    const copy = new Request(request);
    const clone = request.clone();
    const reason = new Error("probe");
    source.abort(reason);
    return [request, copy, clone].every(({ signal }) => signal instanceof AbortSignal && signal.reason === reason);
  } catch {
    return false;
  }
}

/** A rebuilt body is described anew: the parser may have inflated gzip and de-chunked it. */
const WIRE_BODY_HEADERS: ReadonlySet<string> = new Set(["content-encoding", "transfer-encoding", "content-length"]);

/**
 * Builds the W3C Request an actor sees from an Express request. `url` comes from actorUrlText;
 * the headers go straight into the Request's own list, so they are validated and copied once.
 */
export function buildRequest(
  req: ExpressLikeRequest,
  res: ServerResponse,
  url: string,
  maxBodySize: number,
  /** Leave the body on the socket until the Request's body is read (a cluster may forward it instead). */
  lazyBody = false,
): BuiltRequest {
  const method = req.method ?? "GET";
  let body: BodyInit | null = null;
  let rebuilt: Uint8Array | undefined;
  let source: BodySource | undefined;
  // An empty body stays empty even when a parser read it: express.json() leaves `{}` for it.
  if (!BODYLESS.has(method) && hasBody(req)) {
    if (bodyWasConsumed(req)) {
      rebuilt = rebuildBody(req, res, maxBodySize);
      body = rebuilt as BodyInit;
    } else {
      source = new BodySource(req, maxBodySize, lazyBody);
      body = source.stream;
    }
  }

  const signal = newClientSignal();
  // 'close' comes once per response, so `on` without once's wrapper; dispose() removes it.
  const onClose = () => {
    if (!res.writableFinished) signal.abort(new DOMException("The client went away", "AbortError"));
  };
  res.on("close", onClose);
  let handedOver = false;
  const handOver = () => {
    handedOver = true;
    res.off("close", onClose);
  };
  const dispose = () => {
    if (handedOver) return;
    res.off("close", onClose);
    source?.dispose();
  };

  let request: Request;
  try {
    request = new Request(url, { method, body, signal: signal.signal, duplex: "half" } as RequestInit);
  } catch {
    dispose();
    throw URL.canParse(url) ? errors.methodNotAllowed(method) : badUrl();
  }
  try {
    copyHeaders(req.rawHeaders, request.headers, rebuilt && WIRE_BODY_HEADERS);
  } catch (err) {
    dispose();
    throw err;
  }
  if (rebuilt) request.headers.set("content-length", String(rebuilt.byteLength));
  return {
    request,
    get overflowed() {
      return source?.overflowed ?? false;
    },
    dispose,
    rebuilt,
    get bodyTouched() {
      return source?.started ?? false;
    },
    replayable: source === undefined,
    handOver,
  };
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers["content-length"];
  if (length !== undefined) return length !== "0";
  return req.headers["transfer-encoding"] !== undefined;
}

/** body-parser 1.x marks `_body`; 2.x and others leave the stream ended. */
function bodyWasConsumed(req: ExpressLikeRequest): boolean {
  return req._body === true || req.readableEnded;
}

/**
 * A body some middleware already read, rebuilt from what it left behind; still bound by maxBodySize.
 * Always bytes: a string body would make the Request add its own text/plain content-type. Raw bytes
 * an app kept (`req.rawBody`, e.g. from body-parser's `verify`) win; a parsed object is serialized
 * again, which can change numbers, whitespace and key order (docs: re-serialized bodies).
 */
function rebuildBody(req: ExpressLikeRequest, res: ServerResponse, limit: number): Uint8Array {
  const source = req.rawBody ?? req.body;
  let bytes: Uint8Array;
  if (source instanceof Uint8Array) bytes = source;
  else if (typeof source === "string") bytes = Buffer.from(source);
  else if (source !== null && typeof source === "object") {
    const type = req.headers["content-type"] ?? "";
    bytes = Buffer.from(type.includes("application/x-www-form-urlencoded") ? formEncode(source) : jsonBody(source));
  } else {
    loggerOf(res).warn("a middleware read the request body and left no req.body; the actor gets an empty body");
    bytes = new Uint8Array(0);
  }
  if (bytes.byteLength > limit) throw errors.payloadTooLarge(limit);
  return bytes;
}

/** JSON.stringify recurses: a body parsed from thousands of nested arrays cannot be written back. */
function jsonBody(source: object): string {
  try {
    return JSON.stringify(source);
  } catch {
    throw errors.invalidRequest("The request body, as a body parser left it, cannot be rebuilt as JSON");
  }
}

/** Parsed form fields back to a form body: repeated keys for arrays, qs-style brackets for nesting. */
function formEncode(fields: object): string {
  const params = new URLSearchParams();
  const add = (key: string, value: unknown, nested: boolean) => {
    if (Array.isArray(value)) {
      value.forEach((item, i) => add(isObject(item) ? `${key}[${i}]` : nested ? `${key}[]` : key, item, true));
    } else if (isObject(value)) {
      for (const [name, item] of Object.entries(value)) add(`${key}[${name}]`, item, true);
    } else if (value !== undefined) params.append(key, value === null ? "" : String(value));
  };
  for (const [name, value] of Object.entries(fields)) add(name, value, false);
  return params.toString();
}

function isObject(value: unknown): value is object {
  return value !== null && typeof value === "object";
}

/** The request body as a byte stream that pauses the socket when the reader falls behind. */
class BodySource {
  readonly stream: ReadableStream<Uint8Array>;
  overflowed = false;
  started = false;
  private received = 0;
  private ended = false;
  private controller!: ReadableStreamDefaultController<Uint8Array>;

  constructor(private readonly req: IncomingMessage, private readonly limit: number, lazy: boolean) {
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.controller = controller;
          if (!lazy) this.attach();
        },
        pull: () => {
          if (!this.started) this.attach();
          req.resume();
        },
        cancel: () => {
          this.dispose();
        },
      },
      // Lazy: no read ahead, so the socket is untouched until someone reads the body.
      { highWaterMark: lazy ? 0 : STREAM_HIGH_WATER, size: (chunk) => chunk!.byteLength },
    );
  }

  private attach() {
    this.started = true;
    this.req.on("data", this.onData);
    this.req.on("end", this.onEnd);
    this.req.on("error", this.onAbort);
    this.req.on("close", this.onAbort);
    // A lazy body read after the client left: its 'close' has already passed.
    if (this.req.destroyed && !this.req.readableEnded) this.onAbort();
  }

  private readonly onData = (chunk: Buffer) => {
    this.received += chunk.byteLength;
    if (this.received > this.limit) {
      this.overflowed = true;
      this.fail(errors.payloadTooLarge(this.limit));
      this.req.pause();
      return;
    }
    this.controller.enqueue(chunk);
    if ((this.controller.desiredSize ?? 1) <= 0) this.req.pause();
  };

  private readonly onEnd = () => {
    this.ended = true;
    this.detach();
    this.controller.close();
  };

  private readonly onAbort = () => {
    if (this.ended) return;
    this.fail(new DOMException("The client went away before the request body was complete", "AbortError"));
  };

  private fail(reason: unknown) {
    this.ended = true;
    this.detach();
    this.controller.error(reason);
  }

  private detach() {
    this.req.off("data", this.onData);
    this.req.off("end", this.onEnd);
    this.req.off("error", this.onAbort);
    this.req.off("close", this.onAbort);
    // Unread bytes must not leave an 'error' without a listener.
    this.req.on("error", noop);
  }

  dispose() {
    if (!this.ended) {
      this.ended = true;
      this.detach();
      try {
        this.controller.error(new DOMException("The request is over", "AbortError"));
      } catch {
        // Already closed or errored by the reader.
      }
    }
    if (!this.overflowed && !this.req.readableEnded) this.req.resume();
  }
}
