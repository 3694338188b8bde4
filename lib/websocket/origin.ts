import type { IncomingMessage } from "node:http";
import { errors, type ActorError } from "../errors";
import { originOf } from "../http/request";

/**
 * SPEC §11: browsers send cookies with a WebSocket upgrade from any page and CORS does not apply
 * to sockets, so a socket opened by another site's page would act as the signed-in user
 * (cross-site WebSocket hijacking). An upgrade whose Origin is not the request's own origin is
 * refused unless `cors.origin` lists it. No Origin header: not a browser, nothing to check.
 */
export function checkOrigin(req: IncomingMessage, isAllowed?: (origin: string) => boolean): ActorError | undefined {
  const origin = originHeader(req);
  if (origin === undefined || isSameOrigin(origin, req) || isAllowed?.(origin)) return undefined;
  return errors.forbiddenOrigin(origin);
}

/** Clients of the hybi-08 draft (which ws still accepts) send Sec-WebSocket-Origin instead. */
function originHeader(req: IncomingMessage): string | undefined {
  const { headers } = req;
  const origin = headers["sec-websocket-version"] === "8" ? headers["sec-websocket-origin"] : headers.origin;
  return typeof origin === "string" ? origin : undefined;
}

/** Scheme, host and port compared as a URL parser normalizes them (case, default ports); "null" never matches. */
function isSameOrigin(origin: string, req: IncomingMessage): boolean {
  let own: string;
  let theirs: string;
  try {
    own = new URL(originOf(req)).origin;
    theirs = new URL(origin).origin;
  } catch {
    return false;
  }
  return theirs !== "null" && theirs === own;
}
