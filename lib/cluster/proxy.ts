import * as http from "node:http";
import * as https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { RequestHandler } from "http-proxy-middleware";
import { errorResponse, errors } from "../errors";
import { sendError } from "../http/response";
import type { Logger } from "../log";
import { CLUSTER_HTTP_PATH } from "../protocol";
import { loadDriver } from "../stores/driver";
import { FORWARD_HEADER, signForward } from "./signing";
import type { ForwardClaims, HopWatch, Owner } from "./types";

/** One request on its way to the owner. */
interface Hop {
  target: string;
  owner: Owner;
  body?: Uint8Array;
  watch?: HopWatch;
}

type Res = ServerResponse & { flush?: () => void };

/** Headers about one connection, never passed on (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"]);

/**
 * Forwarding to the owning node through http-proxy-middleware, over keep-alive connections:
 * the method, headers and body go as the client sent them, the response comes back chunk by
 * chunk (flushed, so SSE passes per event through compression()), and a client that leaves
 * closes the hop, which cancels the owner's stream.
 */
export function createForwarder(secret: string, log: () => Logger) {
  const { createProxyMiddleware } = loadDriver<typeof import("http-proxy-middleware")>("http-proxy-middleware", "redisCluster");
  const hops = new WeakMap<IncomingMessage, Hop>();
  const agents = [new http.Agent({ keepAlive: true }), new https.Agent({ keepAlive: true })];

  const proxyFor = (agent: http.Agent): RequestHandler =>
    createProxyMiddleware({
      router: (req) => hops.get(req)!.target,
      agent,
      changeOrigin: false,
      xfwd: false,
      selfHandleResponse: true,
      on: {
        proxyReq(proxyReq, req, res) {
          const body = hops.get(req)?.body;
          if (body) proxyReq.write(body);
          res.on("close", () => {
            if (!res.writableFinished) proxyReq.destroy();
          });
        },
        proxyRes(proxyRes, req, res) {
          hops.get(req)?.watch?.done(proxyRes.statusCode ?? 502);
          relay(proxyRes, res as Res);
        },
        error(err, req, res) {
          const hop = hops.get(req as IncomingMessage);
          if (!(res as ServerResponse).writeHead) {
            (res as { destroy(): void }).destroy();
            return;
          }
          const response = res as ServerResponse;
          hop?.watch?.done(response.destroyed ? "cancelled" : "unreachable");
          if (response.destroyed) return;
          log().warn({ err }, `forwarding to ${hop?.owner.url ?? "the owner"} failed`);
          sendError(response, errors.ownerUnreachable(hop?.owner.retryAfter ?? 1));
        },
      },
    });
  const plain = proxyFor(agents[0]);
  const secure = proxyFor(agents[1]);

  return {
    http(req: IncomingMessage, res: ServerResponse, owner: Owner, claims: ForwardClaims, body?: Uint8Array, watch?: HopWatch) {
      if (owner.url === undefined) {
        watch?.done("unreachable");
        sendError(res, errors.ownerUnreachable(owner.retryAfter));
        return;
      }
      const target = new URL(owner.url);
      hops.set(req, { target: target.origin, owner, body, watch });
      req.url = internalPath(target);
      if (watch?.headers) Object.assign(req.headers, watch.headers);
      req.headers[FORWARD_HEADER] = signForward(secret, claims);
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

    async fetch(request: Request, owner: Owner, claims: ForwardClaims, watch?: HopWatch): Promise<Response> {
      if (owner.url === undefined) {
        watch?.done("unreachable");
        return errorResponse(errors.ownerUnreachable(owner.retryAfter));
      }
      const headers = new Headers(request.headers);
      for (const [name, value] of Object.entries(watch?.headers ?? {})) headers.set(name, value);
      headers.set(FORWARD_HEADER, signForward(secret, claims));
      const target = new URL(owner.url);
      try {
        const response = await fetch(target.origin + internalPath(target), {
          method: request.method,
          headers,
          body: request.body,
          redirect: "manual",
          signal: request.signal,
          duplex: "half",
        } as RequestInit);
        watch?.done(response.status);
        return response;
      } catch (err) {
        watch?.done(request.signal.aborted ? "cancelled" : "unreachable");
        log().warn({ err }, `forwarding to ${owner.url} failed`);
        return errorResponse(errors.ownerUnreachable(owner.retryAfter));
      }
    },

    close() {
      for (const agent of agents) agent.destroy();
    },
  };
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
