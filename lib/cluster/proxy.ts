import * as http from "node:http";
import * as https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { RequestHandler } from "http-proxy-middleware";
import { errorResponse, errors } from "../errors";
import { sendError } from "../http/response";
import type { Logger } from "../log";
import { CLUSTER_HTTP_PATH, CLUSTER_UNSERVED_HEADER } from "../protocol";
import { loadDriver } from "../stores/driver";
import { FORWARD_HEADER, forwardSigner } from "./signing";
import type { ForwardClaims, HopRefusal, HopWatch, Owner } from "./types";

/** One request on its way to the owner. */
interface Hop {
  /** The owner's origin, already parsed (http-proxy would parse a string on every request). */
  target: { protocol: string; host: string; hostname: string; port: string };
  owner: Owner;
  body?: Uint8Array;
  watch?: HopWatch;
  refused?: (why: HopRefusal) => boolean;
}

type Res = ServerResponse & { flush?: () => void };

/** Longest a connection to an owner stays open unused, when the owner announces no shorter keep-alive. */
const IDLE_SOCKET_MS = 30_000;

/** Headers about one connection, never passed on (RFC 9110 §7.6.1), and the owner's word to the edge. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "trailer",
  CLUSTER_UNSERVED_HEADER,
]);

/**
 * Forwarding to the owning node through http-proxy-middleware, over keep-alive connections:
 * the method, headers and body go as the client sent them, the response comes back chunk by
 * chunk (flushed, so SSE passes per event through compression()), and a client that leaves
 * closes the hop, which cancels the owner's stream.
 */
export function createForwarder(secret: string, log: () => Logger) {
  const { createProxyMiddleware } = loadDriver<typeof import("http-proxy-middleware")>("http-proxy-middleware", "redisCluster");
  const hops = new WeakMap<IncomingMessage, Hop>();
  const sign = forwardSigner(secret);
  // With a timeout set, Node's agent closes an idle socket a second before the owner's Keep-Alive
  // hint says the owner will, instead of sending a request on it just as the owner closes it.
  const options = { keepAlive: true, timeout: IDLE_SOCKET_MS };
  const agents = [new http.Agent(options), new https.Agent(options)];

  const onProxyReq = (proxyReq: http.ClientRequest, req: IncomingMessage, res: ServerResponse) => {
    const body = hops.get(req)?.body;
    if (body) proxyReq.write(body);
    res.on("close", () => {
      if (!res.writableFinished) proxyReq.destroy();
    });
  };
  const onProxyRes = (proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse) => {
    const hop = hops.get(req);
    // Refused unserved: the edge may place the request again instead of passing the refusal on.
    const again = proxyRes.headers[CLUSTER_UNSERVED_HEADER] !== undefined && hop?.refused?.("unserved");
    hop?.watch?.done(again ? "stale" : (proxyRes.statusCode ?? 502));
    if (again) proxyRes.resume();
    else relay(proxyRes, res as Res);
  };
  const onError = (err: Error, req: IncomingMessage, res: ServerResponse | Socket) => {
    const hop = hops.get(req);
    if (!("writeHead" in res)) {
      res.destroy();
      return;
    }
    if (res.destroyed) {
      hop?.watch?.done("cancelled");
      return;
    }
    const again = hop?.refused?.(refusalOf(err));
    hop?.watch?.done(again ? "stale" : "unreachable");
    if (again) return;
    log().warn({ err }, `forwarding to ${hop?.owner.url ?? "the owner"} failed`);
    sendError(res, errors.ownerUnreachable(hop?.owner.retryAfter ?? 1));
  };

  const proxyFor = (agent: http.Agent): RequestHandler =>
    createProxyMiddleware({
      router: (req) => hops.get(req)!.target,
      agent,
      changeOrigin: false,
      xfwd: false,
      selfHandleResponse: true,
      // Only these handlers: the default plugins log (to nothing) and add listeners on every request.
      ejectPlugins: true,
      plugins: [
        (proxy) => {
          proxy.on("proxyReq", onProxyReq);
          proxy.on("proxyRes", onProxyRes);
          proxy.on("error", onError);
        },
      ],
    });
  const plain = proxyFor(agents[0]);
  const secure = proxyFor(agents[1]);

  return {
    http(
      req: IncomingMessage,
      res: ServerResponse,
      owner: Owner,
      claims: ForwardClaims,
      body?: Uint8Array,
      watch?: HopWatch,
      refused?: (why: HopRefusal) => boolean,
    ) {
      if (owner.url === undefined) {
        watch?.done("unreachable");
        sendError(res, errors.ownerUnreachable(owner.retryAfter));
        return;
      }
      const target = new URL(owner.url);
      const { protocol, host, port } = target;
      // As url.parse gives it to Node's http.request: an IPv6 address without its brackets.
      const hostname = target.hostname.replace(/^\[(.*)\]$/, "$1");
      hops.set(req, { target: { protocol, host, hostname, port }, owner, body, watch, refused });
      req.url = internalPath(target);
      if (watch?.headers) Object.assign(req.headers, watch.headers);
      req.headers[FORWARD_HEADER] = sign(claims);
      if (body) {
        // What a parser read comes back decoded and whole.
        req.headers["content-length"] = String(body.byteLength);
        delete req.headers["transfer-encoding"];
        delete req.headers["content-encoding"];
      }
      const proxy = target.protocol === "https:" ? secure : plain;
      proxy(req, res, (err?: unknown) => {
        watch?.done("unreachable");
        log().error({ err }, "the forwarding proxy failed");
        sendError(res, errors.ownerUnreachable(owner.retryAfter));
      });
    },

    async fetch(
      request: Request,
      owner: Owner,
      claims: ForwardClaims,
      watch?: HopWatch,
      refused?: (why: HopRefusal) => Promise<Response> | undefined,
    ): Promise<Response> {
      if (owner.url === undefined) {
        watch?.done("unreachable");
        return errorResponse(errors.ownerUnreachable(owner.retryAfter));
      }
      const headers = new Headers(request.headers);
      for (const [name, value] of Object.entries(watch?.headers ?? {})) headers.set(name, value);
      headers.set(FORWARD_HEADER, sign(claims));
      const target = new URL(owner.url);
      let response: Response;
      try {
        response = await fetch(target.origin + internalPath(target), {
          method: request.method,
          headers,
          body: request.body,
          redirect: "manual",
          signal: request.signal,
          duplex: "half",
        } as RequestInit);
      } catch (err) {
        const cancelled = request.signal.aborted;
        const again = cancelled ? undefined : refused?.(refusalOf((err as { cause?: unknown }).cause));
        watch?.done(again ? "stale" : cancelled ? "cancelled" : "unreachable");
        if (again) return again;
        log().warn({ err }, `forwarding to ${owner.url} failed`);
        return errorResponse(errors.ownerUnreachable(owner.retryAfter));
      }
      const unserved = response.headers.has(CLUSTER_UNSERVED_HEADER);
      const again = unserved ? refused?.("unserved") : undefined;
      watch?.done(again ? "stale" : response.status);
      if (!unserved) return response;
      if (again) {
        response.body?.cancel().catch(() => {});
        return again;
      }
      const passed = new Headers(response.headers);
      passed.delete(CLUSTER_UNSERVED_HEADER);
      return new Response(response.body, { status: response.status, statusText: response.statusText, headers: passed });
    },

    close() {
      for (const agent of agents) agent.destroy();
    },
  };
}

/** Refused connections never carried the request; anything else may have. */
function refusalOf(err: unknown): HopRefusal {
  return (err as NodeJS.ErrnoException | undefined)?.code === "ECONNREFUSED" ? "unconnected" : "failed";
}

/** The owner's forwarded-request route below its advertised mount path. */
function internalPath(advertised: URL): string {
  return advertised.pathname.replace(/\/+$/, "") + CLUSTER_HTTP_PATH;
}

/** The owner's response back to the client: status, end-to-end headers, each chunk flushed at once. */
function relay(proxyRes: IncomingMessage, res: Res) {
  if (res.destroyed) {
    proxyRes.destroy();
    return;
  }
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(proxyRes.headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
  }
  res.writeHead(proxyRes.statusCode ?? 502, proxyRes.statusMessage ?? "", headers);
  // A body of known length goes out with its headers in one write; a stream's headers go at once.
  if (proxyRes.headers["content-length"] === undefined) res.flushHeaders();
  proxyRes.on("data", (chunk: Buffer) => {
    if (!res.write(chunk)) {
      proxyRes.pause();
      res.once("drain", () => proxyRes.resume());
    }
    res.flush?.();
  });
  proxyRes.on("end", () => res.end());
  // The owner went away mid-body: the client must see a broken response, not a short one.
  proxyRes.on("close", () => {
    if (!proxyRes.complete) res.destroy();
  });
}
