import { channel } from "node:diagnostics_channel";
import * as http from "node:http";
import * as https from "node:https";
import type { Duplex } from "node:stream";
import type { WebSocket as WsSocket } from "ws";
import { log } from "../log";
import { RAW_WEBSOCKET_PATH } from "../protocol";
import { pauseWs, resumeWs, warnUnsupportedWs } from "./ws-compat";

/**
 * express-ws handshakes every upgrade before routing, then lets Express route it. That loses
 * what we need: the original URL (it appends `/.websocket`), the protocol entries (ws would
 * select `query.…` as the subprotocol), and messages sent while async middleware runs. So we
 * see each upgrade first, from an 'upgrade' listener prepended on every server that has another
 * upgrade listener (express-ws's), and hold the socket's frames until a route takes it.
 */
export interface UpgradeInfo {
  url: string;
  protocols: string[];
  /** Lets frames flow again; idempotent. */
  release(): void;
}

// Process-wide: with two copies of this module loaded (nested installs, Jest's per-file module
// registries and globals), only one hook may touch each upgrade, and every copy must read what
// it stashed. So the flag lives on the channel object itself, which Node shares process-wide.
const INFO = Symbol.for("express-actors.upgrade");
const WATCHING = Symbol.for("express-actors.watchingServers");
const connections = channel("net.server.socket");
const RELEASE_AFTER_MS = 10_000;
let warnedNoExpressWs = false;

export function watchServers() {
  const flags = connections as unknown as Record<symbol, boolean | undefined>;
  if (flags[WATCHING]) return;
  flags[WATCHING] = true;
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
  const hooked = upgrade.includes(onUpgrade);
  const others = upgrade.length - (hooked ? 1 : 0);
  if (others > 0 && !hooked) server.prependListener("upgrade", onUpgrade);
  else if (others === 0 && hooked) server.removeListener("upgrade", onUpgrade);
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

function onUpgrade(this: http.Server, req: http.IncomingMessage, socket: Duplex) {
  const protocols = parseProtocols(req.headers["sec-websocket-protocol"] as string | undefined);
  const ours =
    protocols.includes("rivetkit") || isGatewayOffer(protocols) || (req.url ?? "").split("?")[0].includes(RAW_WEBSOCKET_PATH);
  if (this.listenerCount("upgrade") === 1) {
    // The other listener went away after this connection was hooked; nobody can accept it.
    if (ours) refuseWithoutExpressWs(socket);
    else socket.destroy();
    return;
  }
  if (ours) {
    const offer = selectableProtocols(protocols);
    if (offer.length > 0) req.headers["sec-websocket-protocol"] = offer.join(", ");
    else delete req.headers["sec-websocket-protocol"];
  }
  holdUntilRouted(req, protocols);
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

function refuseWithoutExpressWs(socket: Duplex) {
  warnMissingExpressWs();
  const body = JSON.stringify({ code: "websocket_not_configured", message: "WebSockets are not enabled on this server" });
  socket.end(
    "HTTP/1.1 501 Not Implemented\r\nConnection: close\r\nContent-Type: application/json\r\n" +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/** Logged once per process when the WebSocket route is reached on an app without express-ws. */
export function warnMissingExpressWs() {
  if (warnedNoExpressWs) return;
  warnedNoExpressWs = true;
  log.error(
    "a WebSocket upgrade reached an actor route, but express-ws is not set up on this server. " +
      "Call expressWs(app) (or expressWs(app, server)) once, before app.listen(), then mount actorMiddleware.",
  );
}
