import type { IncomingMessage } from "node:http";
import type { WebSocket as WsSocket } from "ws";
import { OwnedElsewhere } from "../cluster/types";
import { ActorError, errors, publicError } from "../errors";
import type { Logger } from "../log";
import type { SocketDriver, W3CWebSocket } from "./socket";
import type { AuthBy, RegistryCore } from "../registry/core";
import type { ParsedQuery } from "../registry/query";
import { actorUrl, originOf, type RouterHeaders } from "../http/request";
import { isTransportEntry, parseProtocols, selectableProtocols, upgradeInfo } from "./upgrade";
import { DEFAULT_LIMITS, type Limits } from "../limits";
import type { ActorInstance } from "../actor/instance";
import { checkOrigin } from "./origin";
import { adaptWs } from "./ws-adapter";

export interface WebSocketTarget {
  query: ParsedQuery;
  params: unknown;
  path: string;
  authBy: AuthBy;
  /** Relayed here by another node (SPEC §9), whose origin the client used: served here or refused. */
  forwarded?: { origin: string };
}

export interface WebSocketOptions {
  maxMessageSize: number;
  /** Origins besides the request's own that may open sockets (`cors.origin`); SPEC §11. */
  isOriginAllowed?: (origin: string) => boolean;
  /** Default: DEFAULT_LIMITS. */
  limits?: Limits;
}

const MAX_REASON_BYTES = 123;
/** HTTP statuses that become 4xxx close codes (400 → 4400 …); anything else is 1011. */
const REFUSAL_STATUSES = new Set([400, 401, 403, 404, 409]);
const CLUSTER_CODES = new Set(["service_restart", "cluster_unavailable", "owner_unreachable", "lease_lost"]);
const noop = () => {};
/** Open sockets per live actor, for maxSocketsPerActor. */
const openSockets = new WeakMap<ActorInstance, number>();
/** Actors whose socket limit was logged once already (per activation). */
const warnedFull = new WeakSet<ActorInstance>();

/**
 * The close code and reason of SPEC §5 for anything thrown while setting up or running a socket.
 * In a cluster a node that shuts down asks clients to reconnect: another node takes over (SPEC §9).
 */
export function closeFor(err: unknown, clustered = false): { code: number; reason: string } {
  const { status, body } = publicError(err);
  if (status === 413) return { code: 1009, reason: "message_too_big" };
  if (body.code === "shutting_down") return clustered ? { code: 1012, reason: "service_restart" } : { code: 1001, reason: "shutting_down" };
  // The cluster's refusals (SPEC §9): the client should reconnect, possibly reaching the owner.
  if (status === 503 && CLUSTER_CODES.has(body.code)) return { code: 1012, reason: body.code };
  const code = REFUSAL_STATUSES.has(status) ? 4000 + status : 1011;
  return { code, reason: truncate(body.code) };
}

function truncate(reason: string): string {
  let text = reason;
  while (Buffer.byteLength(text) > MAX_REASON_BYTES) text = text.slice(0, -1);
  return text;
}

/** Reads the query, conn params and encoding from `Sec-WebSocket-Protocol` entries into `rivet`. */
export function readProtocolEntries(protocols: string[], rivet: RouterHeaders) {
  for (const entry of protocols) {
    const dot = entry.indexOf(".");
    if (dot === -1 || !isTransportEntry(entry)) continue;
    const kind = entry.slice(0, dot);
    let value: string;
    try {
      value = decodeURIComponent(entry.slice(dot + 1));
    } catch {
      // Bad percent-encoding: a value no JSON parser accepts, so it is refused as invalid_query.
      value = "\u0000";
    }
    if (kind === "query") rivet.query = value;
    else if (kind === "conn_params") rivet.params = value;
    else rivet.encoding = value;
  }
}

/** The original offer: from our upgrade hook when it ran, else the header as ws saw it. */
export function offeredProtocols(req: IncomingMessage): string[] {
  return upgradeInfo(req)?.protocols ?? parseProtocols(req.headers["sec-websocket-protocol"] as string | undefined);
}

/** The actor's view of the upgrade request's protocols: never the query or conn params entries. */
export function filterProtocolHeader(headers: Headers, offered: string[]) {
  const visible = selectableProtocols(offered);
  if (visible.length > 0) headers.set("sec-websocket-protocol", visible.join(", "));
  else headers.delete("sec-websocket-protocol");
}

/** Runs an accepted `ws` socket through onAuth and the actor's onWebSocket; refusals close with SPEC §5 codes. */
export async function serveWebSocket(
  core: RegistryCore,
  ws: WsSocket,
  req: IncomingMessage,
  headers: Headers,
  target: WebSocketTarget | ActorError,
  options: WebSocketOptions,
): Promise<void> {
  const forwarded = target instanceof ActorError ? undefined : target.forwarded;
  // A relayed socket's origin was checked by the node the client reached.
  const forbidden = forwarded ? undefined : checkOrigin(req, options.isOriginAllowed);
  if (forbidden) {
    refuse(ws, forbidden, core);
    return;
  }
  let url: string;
  try {
    url = actorUrl(forwarded?.origin ?? originOf(req), target instanceof ActorError ? "/" : target.path);
  } catch (err) {
    refuse(ws, err, core);
    return;
  }
  if (target instanceof ActorError) {
    refuse(ws, target, core);
    return;
  }
  const limits = options.limits ?? DEFAULT_LIMITS;
  const logger: { current: Logger } = { current: core.log };
  const { socket, driver } = adaptWs(ws, req, {
    url: url.replace(/^http/, "ws"),
    maxMessageSize: options.maxMessageSize,
    maxPending: { messages: limits.maxPendingWebSocketMessages, bytes: limits.maxPendingWebSocketBytes },
    onListenerError: (err) => logger.current.error({ err }, "a WebSocket listener threw"),
  });
  await runActorSocket(core, socket, driver, new Request(url, { headers }), target, logger, limits.maxSocketsPerActor);
}

/**
 * The transport-independent part, shared with the in-process client: enter the actor, keep it awake
 * while the socket lives, run onWebSocket, save, then dispatch `open` and any held events.
 */
export async function runActorSocket(
  core: RegistryCore,
  socket: W3CWebSocket,
  driver: SocketDriver,
  request: Request,
  target: WebSocketTarget | ActorError,
  logger: { current: Logger } = { current: core.log },
  maxSockets = Infinity,
): Promise<void> {
  const clustered = core.cluster !== undefined;
  if (target instanceof ActorError) {
    const { code, reason } = closeFor(target, clustered);
    driver.fail(code, reason);
    return;
  }
  let entered;
  try {
    entered = await core.enter(target.query, {
      request,
      params: target.params,
      intent: "websocket",
      authBy: target.authBy,
      forwarded: target.forwarded !== undefined,
    });
  } catch (err) {
    if (err instanceof OwnedElsewhere) {
      relayToOwner(core, socket, driver, request, target, err);
      return;
    }
    const { code, reason } = closeFor(err, clustered);
    driver.fail(code, reason);
    return;
  }
  const { instance, auth } = entered;
  // A shutdown that began while the actor was activating has already closed the sockets it knew of.
  if (core.shuttingDown) {
    instance.release();
    const { code, reason } = closeFor(errors.shuttingDown(), clustered);
    driver.fail(code, reason);
    return;
  }
  const sockets = openSockets.get(instance) ?? 0;
  if (sockets >= maxSockets) {
    if (!warnedFull.has(instance)) {
      warnedFull.add(instance);
      instance.log.warn(`refusing WebSockets over maxSocketsPerActor (${maxSockets}) with 1013 too_many_sockets`);
    }
    instance.release();
    // 1013 Try Again Later: the standard code for a temporary refusal, which reconnecting clients retry.
    driver.fail(1013, "too_many_sockets");
    return;
  }
  openSockets.set(instance, sockets + 1);
  logger.current = instance.log;
  const watch = core.telemetry.observer?.socket(instance, request);
  // In a cluster another node takes over at once, so the client is told to reconnect.
  const shutdown = core.cluster ? () => driver.fail(1012, "service_restart") : () => driver.fail(1001, "shutting_down");
  const lost = () => driver.fail(1012, "service_restart");
  core.closers.add(shutdown);
  instance.closeOnLeaseLoss(lost);
  let released = false;
  // The first close listener; its work waits a microtask, so what the other close listeners change
  // is in this save. A synthetic close event (readyState still OPEN) releases nothing.
  const finish = (event: Event) => {
    if (released || socket.readyState !== socket.CLOSED) return;
    released = true;
    openSockets.set(instance, openSockets.get(instance)! - 1);
    watch?.closed((event as CloseEvent).code);
    core.closers.delete(shutdown);
    instance.keepOnLeaseLoss(lost);
    queueMicrotask(() => {
      instance.save().catch(noop);
      instance.release();
    });
  };
  socket.addEventListener("close", finish);

  try {
    const { config, ctx } = instance;
    const ws = socket as unknown as WebSocket;
    await (watch ? watch.run(() => config.onWebSocket!(ctx, ws, { request, auth })) : config.onWebSocket!(ctx, ws, { request, auth }));
  } catch (err) {
    if (!(err instanceof ActorError)) instance.log.error({ err }, "onWebSocket threw");
    const { code, reason } = closeFor(err);
    driver.fail(code, reason);
    driver.start();
    return;
  }
  try {
    await instance.save();
  } catch {
    driver.fail(1011, "state_save_failed");
  }
  driver.start();
}

/** Another node owns the actor: the socket goes on to it, with what onAuth decided here. */
function relayToOwner(core: RegistryCore, socket: W3CWebSocket, driver: SocketDriver, request: Request, target: WebSocketTarget, to: OwnedElsewhere) {
  const claims = {
    actorId: to.meta.actorId,
    name: to.meta.name,
    auth: to.auth,
    origin: new URL(request.url).origin,
    method: "GET",
    path: target.path,
  };
  const gone = () => core.ownerRefused(to.meta.actorId, to.owner);
  const { observer } = core.telemetry;
  if (observer) observer.forward(request, claims, (watch) => core.cluster!.forwardSocket({ socket, driver }, request, to.owner, claims, core.closers, watch, gone), true);
  else core.cluster!.forwardSocket({ socket, driver }, request, to.owner, claims, core.closers, undefined, gone);
}

function refuse(ws: WsSocket, err: unknown, core: RegistryCore) {
  if (!(err instanceof ActorError)) core.log.error({ err }, "unexpected error");
  ws.on("error", noop);
  const { code, reason } = closeFor(err, core.cluster !== undefined);
  ws.close(code, reason);
}
