import type { ForwardClaims, HopResult } from "../cluster/types";
import { ActorError } from "../errors";
import { loadDriver } from "../stores/driver";
import type { ActorMeta } from "../stores/types";

type OtelApi = typeof import("@opentelemetry/api");
type Span = import("@opentelemetry/api").Span;
type Context = import("@opentelemetry/api").Context;

/** The part of an OpenTelemetry `Tracer` this needs: `trace.getTracer("my-app")` fits it. */
export interface TracerLike {
  startSpan(name: string, options?: any, context?: any): any;
}

/** A span for the life of one actor socket. */
export interface SocketSpan {
  run<T>(fn: () => T): T;
  end(code: number): void;
}

/** The span of one forwarding hop, and the trace context the hop carries to the owner. */
export interface HopSpan {
  /** `traceparent` (and `tracestate`) naming this span as the owner's parent. */
  headers: Record<string, string>;
  run<T>(fn: () => T): T;
  end(result: HopResult): void;
}

const headerGetter = {
  get: (headers: Headers, key: string) => headers.get(key) ?? undefined,
  keys: (headers: Headers) => [...headers.keys()],
};

/**
 * Spans `actor.fetch`, `actor.websocket` and `actor.save`, each a child of the span active where
 * the work begins (the incoming request's, under HTTP instrumentation). @opentelemetry/api, an
 * optional peer dependency, loads only when the `tracing` option is set.
 */
export class Tracing {
  private readonly api: OtelApi;
  private readonly tracer: TracerLike;

  constructor(option: true | TracerLike) {
    this.api = loadDriver<OtelApi>("@opentelemetry/api", "setup({ tracing })");
    this.tracer = option === true ? this.api.trace.getTracer("express-actors") : option;
  }

  /** The active context; without a span in it (no HTTP instrumentation), the caller's `traceparent`. */
  private parent(request: Request): Context {
    const { context, propagation, trace } = this.api;
    const active = context.active();
    return trace.getSpan(active) ? active : propagation.extract(active, request.headers, headerGetter);
  }

  private start(name: string, meta: Pick<ActorMeta, "name" | "actorId">, parent: Context, attributes: object = {}): Span {
    return this.tracer.startSpan(name, { attributes: { "actor.name": meta.name, "actor.id": meta.actorId, ...attributes } }, parent);
  }

  async fetch(meta: ActorMeta, request: Request, run: () => Promise<Response>): Promise<Response> {
    const parent = this.parent(request);
    const span = this.start("actor.fetch", meta, parent, { "http.request.method": request.method });
    try {
      const response = await this.api.context.with(this.api.trace.setSpan(parent, span), run);
      this.status(span, response.status);
      return response;
    } catch (err) {
      // The handler's own error is logged, not recorded: onFetch's failures reach here as library errors.
      this.status(span, err instanceof ActorError ? err.status : 500);
      throw err;
    } finally {
      span.end();
    }
  }

  socket(meta: ActorMeta, request: Request): SocketSpan {
    const parent = this.parent(request);
    const span = this.start("actor.websocket", meta, parent);
    const inside = this.api.trace.setSpan(parent, span);
    return {
      run: (fn) => this.api.context.with(inside, fn),
      end: (code) => {
        span.setAttribute("websocket.close_code", code);
        // 1011: a handler or listener threw, or a save failed; 1006: the connection was cut.
        if (code === 1011 || code === 1006) span.setStatus({ code: this.api.SpanStatusCode.ERROR });
        span.end();
      },
    };
  }

  async save(actor: string, actorId: string, write: () => Promise<void>): Promise<void> {
    const { context, trace } = this.api;
    const parent = context.active();
    const span = this.start("actor.save", { name: actor, actorId }, parent);
    try {
      await context.with(trace.setSpan(parent, span), write);
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: this.api.SpanStatusCode.ERROR, message: (err as { code?: string }).code });
      throw err;
    } finally {
      span.end();
    }
  }

  /**
   * `actor.forward` (a client span) at the edge, from handing the request to the owner until its
   * response head; the owner's `actor.fetch` continues the trace from the headers it injects.
   */
  forward(request: Request, claims: ForwardClaims): HopSpan {
    const { context, propagation, trace, SpanKind, SpanStatusCode } = this.api;
    const parent = this.parent(request);
    const span = this.tracer.startSpan(
      "actor.forward",
      { kind: SpanKind.CLIENT, attributes: { "actor.name": claims.name, "actor.id": claims.actorId, "http.request.method": claims.method } },
      parent,
    );
    const inside = trace.setSpan(parent, span);
    const headers: Record<string, string> = {};
    propagation.inject(inside, headers);
    return {
      headers,
      run: (fn) => context.with(inside, fn),
      end: (result) => {
        if (typeof result === "number") this.status(span, result);
        else {
          span.setAttribute("actor.forward.outcome", result);
          if (result === "unreachable") span.setStatus({ code: SpanStatusCode.ERROR, message: "owner_unreachable" });
        }
        span.end();
      },
    };
  }

  private status(span: Span, status: number) {
    span.setAttribute("http.response.status_code", status);
    if (status >= 500) span.setStatus({ code: this.api.SpanStatusCode.ERROR });
  }
}
