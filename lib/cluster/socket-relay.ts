import type { WebSocket as WsSocket } from "ws";
import type { Logger } from "../log";
import { CLUSTER_WEBSOCKET_PATH } from "../protocol";
import { loadDriver } from "../stores/driver";
import { onWsMessage, pauseWs, resumeWs } from "../websocket/ws-compat";
import { FORWARD_HEADER, signForward } from "./signing";
import type { ForwardClaims, HopWatch, Owner, RelayedSocket } from "./types";

/** Past this many bytes queued toward one side, the other side is no longer read. */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;

/** Request headers that describe the client's own connection or handshake, never relayed. */
const NOT_RELAYED = new Set([
  "connection",
  "upgrade",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "content-length",
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-extensions",
  "sec-websocket-protocol",
]);

type WsModule = typeof import("ws");

/**
 * A socket accepted at the edge for an actor another node owns, relayed message by message to the
 * owner's socket route. express-ws has completed the client's handshake before any route (and so
 * onAuth and placement) runs, so the raw upgrade cannot be handed to http-proxy-middleware: the
 * edge keeps the client's socket and opens one of its own to the owner. Text and binary messages,
 * close codes and reasons cross in both directions, in order; each side stops being read while the
 * other has more than HIGH_WATER bytes queued. Fragmented messages arrive whole, and pings are
 * answered by the node they reach (each hop has its own keepalive).
 */
export function createSocketRelay(secret: string, handshakeTimeout: number, log: () => Logger) {
  let ws: WsModule | undefined;

  return function relay(
    client: RelayedSocket,
    request: Request,
    owner: Owner,
    claims: ForwardClaims,
    closers: Set<() => void>,
    watch?: HopWatch,
    gone?: () => void,
  ) {
    const { socket, driver } = client;
    if (owner.url === undefined) {
      watch?.done("unreachable");
      driver.fail(1012, "owner_unreachable");
      return;
    }
    ws ??= loadDriver<WsModule>("ws", "Relaying a WebSocket to another node");
    const target = new URL(owner.url);
    target.protocol = target.protocol === "https:" ? "wss:" : "ws:";
    target.pathname = target.pathname.replace(/\/+$/, "") + CLUSTER_WEBSOCKET_PATH;
    const headers: Record<string, string> = { [FORWARD_HEADER]: signForward(secret, { ...claims, socket: true }) };
    for (const [name, value] of request.headers) if (!NOT_RELAYED.has(name)) headers[name] = value;
    Object.assign(headers, watch?.headers);
    const offered = request.headers.get("sec-websocket-protocol");
    const protocols = offered ? offered.split(",").map((p) => p.trim()).filter(Boolean) : [];

    let upstream: WsSocket;
    try {
      upstream = new ws.WebSocket(target.href, protocols, {
        headers,
        handshakeTimeout,
        // The client's messages were already checked against maxMessageSize at the edge; the actor's are unbounded locally too.
        maxPayload: 0,
        perMessageDeflate: socket.extensions.includes("permessage-deflate"),
      });
    } catch (err) {
      watch?.done("unreachable");
      log().warn({ err }, `relaying a WebSocket to ${owner.url} failed`);
      driver.fail(1012, "owner_unreachable");
      return;
    }

    let opened = false;
    let done = false;
    const finish = () => {
      done = true;
      closers.delete(shutdown);
    };
    const shutdown = () => {
      watch?.done("cancelled");
      finish();
      driver.resume();
      driver.fail(1012, "service_restart");
      upstream.close(1001, "going_away");
    };
    closers.add(shutdown);

    const unreachable = (err?: unknown) => {
      if (done) return;
      finish();
      gone?.();
      watch?.done("unreachable");
      if (err) log().warn({ err }, `relaying a WebSocket to ${owner.url} failed`);
      driver.resume();
      driver.fail(1012, "owner_unreachable");
    };
    upstream.on("error", (err) => {
      if (!opened) unreachable(err);
    });
    upstream.on("unexpected-response", (_req, res) => {
      res.resume();
      unreachable(new Error(`the owner answered the socket relay with HTTP ${res.statusCode}`));
      upstream.terminate();
    });

    upstream.on("open", () => {
      opened = true;
      watch?.done(101);
      if (done) {
        upstream.close(1001, "going_away");
        return;
      }
      socket.binaryType = "arraybuffer";
      let clientPaused = false;
      const relayed = () => {
        if (clientPaused && upstream.bufferedAmount <= LOW_WATER) {
          clientPaused = false;
          driver.resume();
        }
      };
      socket.addEventListener("message", (event) => {
        const data = (event as MessageEvent).data as string | ArrayBuffer;
        upstream.send(typeof data === "string" ? data : Buffer.from(data), relayed);
        if (!clientPaused && upstream.bufferedAmount > HIGH_WATER) {
          clientPaused = true;
          driver.pause();
        }
      });
      let upstreamPaused = false;
      const drained = () => {
        upstreamPaused = false;
        resumeWs(upstream);
      };
      onWsMessage(upstream, (data, binary) => {
        if (socket.readyState !== socket.OPEN) return;
        socket.send(binary ? (data as Uint8Array) : data.toString());
        if (!upstreamPaused && socket.bufferedAmount > HIGH_WATER) {
          upstreamPaused = true;
          pauseWs(upstream);
          driver.whenDrained(LOW_WATER, drained);
        }
      });
      socket.addEventListener("close", (event) => {
        if (done) return;
        finish();
        closeUpstream(upstream, event as CloseEvent);
      });
      upstream.on("close", (code: number, reason: Buffer | string) => {
        if (done) return;
        finish();
        // The owner went away, drains or lost the actor: the next socket asks Redis who owns it.
        if (code === 1006 || code === 1012) gone?.();
        driver.resume();
        closeClient(socket, client, code, reason.toString());
      });
      // Dispatches what the client sent while the owner was being reached, then the live stream.
      driver.start();
    });
  };
}

/** The client's close, as the owner should see it: 1006 stays abnormal, 1005 stays codeless. */
function closeUpstream(upstream: WsSocket, event: CloseEvent) {
  if (!event.wasClean || event.code === 1006) upstream.terminate();
  else if (event.code === 1005) upstream.close();
  else {
    try {
      upstream.close(event.code, event.reason);
    } catch {
      // A code no endpoint may send (1015): the owner sees the connection drop, as it would have.
      upstream.terminate();
    }
  }
}

/** The owner's close, as the client should see it; a lost owner asks the client to reconnect. */
function closeClient(socket: RelayedSocket["socket"], client: RelayedSocket, code: number, reason: string) {
  if (code === 1005) socket.close();
  else if (code === 1006) client.driver.fail(1012, "owner_unreachable");
  else client.driver.fail(code, reason);
}
