import { log, type Logger } from "./log";

/** An error with a wire code and HTTP status; every error the library reports is one of these. */
export class ActorError extends Error {
  readonly code: string;
  readonly status: number;
  readonly metadata: unknown;
  /** Seconds for a Retry-After header (the cluster's 503s). */
  retryAfter?: number;

  constructor(status: number, code: string, message: string, metadata?: unknown) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.metadata = metadata;
  }
}

export interface UserErrorOptions {
  code?: string;
  metadata?: unknown;
}

/** Thrown from onAuth or a handler: the client sees 400 with this code, message and metadata. */
export class UserError extends ActorError {
  constructor(message: string, options: UserErrorOptions = {}) {
    super(400, options.code ?? "user_error", message, options.metadata);
  }
}

export class Unauthorized extends ActorError {
  constructor(message = "Unauthorized", metadata?: unknown) {
    super(401, "unauthorized", message, metadata);
  }
}

export class Forbidden extends ActorError {
  constructor(message = "Forbidden", metadata?: unknown) {
    super(403, "forbidden", message, metadata);
  }
}

export const errors = {
  invalidQuery: (message: string) => new ActorError(400, "invalid_query", message),
  invalidEncoding: (value: string) =>
    new ActorError(400, "invalid_encoding", `Unsupported encoding "${value}"; only "json" is supported`),
  invalidRequest: (message: string) => new ActorError(400, "invalid_request", message),
  forbidden: () => new Forbidden("This actor has no onAuth, so it is not reachable from the public"),
  forbiddenOrigin: (origin: string) =>
    new ActorError(403, "forbidden_origin", `WebSocket upgrades from origin ${JSON.stringify(origin)} are not allowed`),
  actorNotFound: (what: string) => new ActorError(404, "actor_not_found", `Actor not found: ${what}`),
  fetchNotDefined: (name: string) =>
    new ActorError(404, "fetch_not_defined", `Actor "${name}" does not define onFetch`),
  websocketNotDefined: (name: string) =>
    new ActorError(404, "websocket_not_defined", `Actor "${name}" does not define onWebSocket`),
  methodNotAllowed: (method: string) =>
    new ActorError(405, "method_not_allowed", `Method ${method} cannot be represented as a W3C Request`),
  alreadyExists: (name: string, key: string[]) =>
    new ActorError(409, "actor_already_exists", `Actor "${name}" with key ${JSON.stringify(key)} already exists`),
  payloadTooLarge: (limit: number) =>
    new ActorError(413, "payload_too_large", `Request body exceeds the limit of ${limit} bytes`),
  websocketNotConfigured: () => new ActorError(501, "websocket_not_configured", "WebSockets are not enabled on this server"),
  invalidFetchResponse: () =>
    new ActorError(500, "invalid_fetch_response", "onFetch must return a Response"),
  internal: () => new ActorError(500, "internal_error", "Internal error"),
  stateSaveFailed: () => new ActorError(503, "state_save_failed", "The actor state could not be saved"),
  shuttingDown: () => new ActorError(503, "shutting_down", "The registry is shutting down"),
  clusterUnavailable: () =>
    new ActorError(503, "cluster_unavailable", "The cluster cannot confirm who owns this actor (Redis is unreachable)"),
  ownerUnreachable: (retryAfter: number) =>
    Object.assign(new ActorError(503, "owner_unreachable", "The node that owns this actor does not answer"), { retryAfter }),
  leaseLost: (message = "This node lost the actor's lease during the request; nothing was saved") =>
    Object.assign(new ActorError(503, "lease_lost", message), { retryAfter: 1 }),
};

export interface ErrorBody {
  code: string;
  message: string;
  metadata?: unknown;
}

/** Maps anything thrown to what a client may see: ActorErrors as they are, the rest generic. */
export function publicError(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof ActorError) {
    const body: ErrorBody = { code: err.code, message: err.message };
    if (err.metadata !== undefined) {
      // Metadata that cannot become JSON (BigInt, cycle) is dropped, so the error itself still reaches the client.
      try {
        JSON.stringify(err.metadata);
        body.metadata = err.metadata;
      } catch (cause) {
        log.error({ err: cause }, `the metadata of error "${err.code}" is not JSON and was dropped`);
      }
    }
    return { status: err.status, body };
  }
  return { status: 500, body: { code: "internal_error", message: "Internal error" } };
}

/** The JSON error Response of SPEC §5, as the server-side client returns it. */
export function errorResponse(err: unknown, logger: Logger = log): Response {
  if (!(err instanceof ActorError)) logger.error({ err }, "unexpected error");
  const { status, body } = publicError(err);
  const retryAfter = err instanceof ActorError ? err.retryAfter : undefined;
  return Response.json(body, { status, headers: retryAfter === undefined ? undefined : { "retry-after": String(retryAfter) } });
}

/** Turns an error Response back into a throwable ActorError (for create() and resolve()). */
export async function errorFromResponse(response: Response): Promise<ActorError> {
  let body: Partial<ErrorBody> = {};
  try {
    body = (await response.json()) as ErrorBody;
  } catch {
    // Not one of ours (a proxy's HTML page, say): keep the status as the only signal.
  }
  return new ActorError(
    response.status,
    typeof body.code === "string" ? body.code : "http_" + response.status,
    typeof body.message === "string" ? body.message : `Request failed with status ${response.status}`,
    body.metadata,
  );
}
