import { channel } from "node:diagnostics_channel";
import * as http from "node:http";
import * as https from "node:https";
import type { Socket } from "node:net";
import type { WebSocket as WsSocket } from "ws";
import { publicError } from "../errors";
import { gatewayError } from "../gateway/errors";
import type { ErrorShape } from "../http/error-shape";
import { CLUSTER_WEBSOCKET_PATH, RAW_WEBSOCKET_PATH } from "../protocol";
import { refuseIfUnclaimed, refuseWithoutExpressWs, servedWithoutExpressWs } from "./without-express-ws";
import { pauseWs, resumeWs, warnUnsupportedWs } from "./ws-compat";

/**
 * express-ws handshakes every upgrade before routing, then lets Express route it. That loses
 * what we need: the original URL (it appends `/.websocket`), the protocol entries (ws would
 * select `query.…` as the subprotocol), and messages sent while async middleware runs. So we
 * see each upgrade first, from an 'upgrade' listener prepended on every server that has another
 * upgrade listener (express-ws's, Socket.IO's, the app's own ws server's), and hold the socket's
 * frames until a route takes it. An upgrade to the actor route that express-ws does not take is
 * refused with 501, as Node's no-listener path does (without-express-ws.ts).
 */
export interface UpgradeInfo {
  url: string;
  protocols: string[];
  /** Lets frames flow again; idempotent. */
  release(): void;
}

// Process-wide: with two copies of this module loaded (nested installs, Jest's per-file module
// registries and globals), only one hook may touch each upgrade, and every copy must read what
// it stashed. So the flags live on the channel object itself, which Node shares process-wide.
// The hook installed on servers is the first copy's `dispatchUpgrade`; it runs the `onUpgrade` of
// the copy that called watchServers() last (under Jest, the running test file's, whose console
// and timers are live).
const INFO = Symbol.for("express-actors.upgrade");
const WATCHING = Symbol.for("express-actors.watchingServers");
const HANDLER = Symbol.for("express-actors.upgradeHandler");
const connections = channel("net.server.socket");
const shared = connections as unknown as { [WATCHING]?: boolean; [HANDLER]?: typeof onUpgrade };
const RELEASE_AFTER_MS = 10_000;
/** `{mount}/gateway/{actorId|name}/websocket/…`, the gateway's raw socket route (gateway/paths.ts). */
const GATEWAY_SOCKET = /\/gateway\/[^/]+\/websocket(?:\/|$)/;

export function watchServers() {
  shared[HANDLER] = onUpgrade;
  if (shared[WATCHING]) return;
  shared[WATCHING] = true;
  warnUnsupportedWs();
  connections.subscribe((message) => {
    const server = (message as { socket: { server?: unknown } }).socket.server;
    if (server instanceof http.Server || server instanceof https.Server) hookServer(server);
  });
}

/**
 * Checked on every connection, because listeners come and go. With no other 'upgrade' listener
 * we stay off: Node then hands upgrade requests to the app as plain requests (the actor route
 * answers them 501), as it would without us.
 */
function hookServer(server: http.Server) {
  const upgrade = server.listeners("upgrade");
  const hooked = upgrade.includes(dispatchUpgrade);
  const others = upgrade.length - (hooked ? 1 : 0);
  if (others > 0 && !hooked) server.prependListener("upgrade", dispatchUpgrade);
  else if (others === 0 && hooked) server.removeListener("upgrade", dispatchUpgrade);
}

function dispatchUpgrade(this: http.Server, req: http.IncomingMessage, socket: Socket) {
  (shared[HANDLER] ?? onUpgrade).call(this, req, socket);
}

export function upgradeInfo(req: http.IncomingMessage): UpgradeInfo | undefined {
  return (req as unknown as Record<symbol, UpgradeInfo | undefined>)[INFO];
}

/** Lets a held upgrade's frames flow; call once the socket's listeners exist. */
export function releaseUpgrade(req: http.IncomingMessage) {
  upgradeInfo(req)?.release();
}

export function parseProtocols(header: string | undefined): string[] {
  if (!header) return [];
  return header.split(",").map((p) => p.trim()).filter(Boolean);
}

/** `query.`, `conn_params.` and `encoding.` entries carry the request; they are never a subprotocol. */
export function isTransportEntry(protocol: string): boolean {
  return protocol.startsWith("query.") || protocol.startsWith("conn_params.") || protocol.startsWith("encoding.");
}

/**
 * The offer ws should choose from: user protocols first, then the `rivetkit` marker (SPEC §2).
 * RivetKit's own client (SPEC §10) offers the `rivet` marker with `rivet_*` entries that carry
 * conn params and the like: `rivet` is selected, as RivetKit's server does, and no `rivet_*` entry ever is.
 */
export function selectableProtocols(protocols: string[]): string[] {
  if (isGatewayOffer(protocols)) return ["rivet", ...protocols.filter((p) => p !== "rivet" && !p.startsWith("rivet_"))];
  const user = protocols.filter((p) => p !== "rivetkit" && !isTransportEntry(p));
  return protocols.includes("rivetkit") ? [...user, "rivetkit"] : user;
}

function isGatewayOffer(protocols: string[]): boolean {
  return protocols.includes("rivet") && !protocols.includes("rivetkit");
}

/**
 * The error body of the router's socket route an upgrade is for: raw (SPEC §2) or RivetKit's
 * gateway (SPEC §10); undefined for any other path.
 */
function actorRouteShape(pathname: string, protocols: string[]): ErrorShape | undefined {
  if (pathname.includes(RAW_WEBSOCKET_PATH) || pathname.includes(CLUSTER_WEBSOCKET_PATH)) return publicError;
  if (isGatewayOffer(protocols) && GATEWAY_SOCKET.test(pathname)) return gatewayError;
  return undefined;
}

function onUpgrade(this: http.Server, req: http.IncomingMessage, socket: Socket) {
  const protocols = parseProtocols(req.headers["sec-websocket-protocol"] as string | undefined);
  const route = actorRouteShape((req.url ?? "").split("?")[0], protocols);
  const ours = route !== undefined || protocols.includes("rivetkit") || isGatewayOffer(protocols);
  if (this.listenerCount("upgrade") === 1) {
    // The other listener went away after this connection was hooked; nobody can accept it.
    if (ours) refuseWithoutExpressWs(this, socket, route);
    else socket.destroy();
    return;
  }
  // Answered before the other listeners run: they could accept it as theirs or destroy it.
  if (route && servedWithoutExpressWs(this)) {
    refuseWithoutExpressWs(this, socket, route);
    return;
  }
  if (ours) {
    const offer = selectableProtocols(protocols);
    if (offer.length > 0) req.headers["sec-websocket-protocol"] = offer.join(", ");
    else delete req.headers["sec-websocket-protocol"];
  }
  holdUntilRouted(req, protocols);
  if (route) refuseIfUnclaimed(this, req, socket, route);
}

/**
 * express-ws assigns `req.ws` right after the handshake, before any frame is read, and then runs
 * the app. From that moment the socket is paused until a route claims it (`req.wsHandled = true`,
 * set by express-ws's wrapper and by ours before attaching listeners in the same turn), or until
 * express-ws closes it (no route, or a middleware refused it): a closing handshake needs frames.
 */
function holdUntilRouted(req: http.IncomingMessage, protocols: string[]) {
  let ws: WsSocket | undefined;
  let handled = false;
  let timer: NodeJS.Timeout | undefined;
  const release = () => {
    if (!timer || !ws) return;
    clearTimeout(timer);
    timer = undefined;
    delete (ws as { close?: unknown }).close;
    resumeWs(ws);
  };
  const info: UpgradeInfo = { url: req.url ?? "/", protocols, release };
  Object.defineProperties(req, {
    [INFO]: { value: info },
    ws: {
      configurable: true,
      enumerable: true,
      get: () => ws,
      set(value: WsSocket | undefined) {
        ws = value;
        if (!value || timer) return;
        pauseWs(value);
        timer = setTimeout(release, RELEASE_AFTER_MS);
        timer.unref();
        const close = value.close;
        value.close = function (this: WsSocket, ...args: Parameters<WsSocket["close"]>) {
          release();
          return close.apply(this, args);
        };
        value.once("close", release);
      },
    },
    wsHandled: {
      configurable: true,
      enumerable: true,
      get: () => handled,
      set(value: boolean) {
        handled = value;
        if (value) release();
      },
    },
  });
}
