import { ActorError, Forbidden, publicError, Unauthorized, UserError } from "../errors";

/** RivetKit's error groups for our codes, so the client's `ActorError` has both (SPEC §10). */
const GROUPS: Record<string, string> = {
  invalid_query: "request",
  invalid_encoding: "request",
  invalid_request: "request",
  method_not_allowed: "request",
  payload_too_large: "request",
  upgrade_required: "request",
  websocket_not_configured: "request",
  unauthorized: "auth",
  forbidden: "auth",
  actor_not_found: "actor",
  actor_already_exists: "actor",
  shutting_down: "actor",
  state_save_failed: "actor",
  fetch_not_defined: "handler",
  websocket_not_defined: "handler",
  invalid_fetch_response: "handler",
  actions_not_supported: "handler",
  connections_not_supported: "handler",
  internal_error: "internal",
};

/** RivetKit features that need its actor runtime: the client gets a clear refusal instead of the app's 404 page. */
export const unsupported = {
  actions: () =>
    new ActorError(404, "actions_not_supported", "express-actors actors have no actions: use handle.fetch() and handle.websocket() (onFetch, onWebSocket)"),
  connections: () =>
    new ActorError(404, "connections_not_supported", "express-actors actors have no connections or events: use handle.websocket() (onWebSocket)"),
};

export interface GatewayErrorBody {
  group: string;
  code: string;
  message: string;
  metadata: unknown;
}

/** SPEC §5's statuses with the body RivetKit's client parses: `{ group, code, message, metadata }`. */
export function gatewayError(err: unknown): { status: number; body: GatewayErrorBody } {
  const { status, body } = publicError(err);
  return { status, body: { group: groupOf(err, body.code), code: body.code, message: body.message, metadata: body.metadata ?? null } };
}

function groupOf(err: unknown, code: string): string {
  if (err instanceof UserError) return "user";
  if (err instanceof Unauthorized || err instanceof Forbidden) return "auth";
  if (!(err instanceof ActorError)) return "internal";
  return GROUPS[code] ?? "actor";
}
