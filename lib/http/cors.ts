import type { IncomingMessage, ServerResponse } from "node:http";

export interface CorsOptions {
  /** Allowed origins: one, a list, or `true` for any (the request's origin is echoed). */
  origin: string | string[] | true;
  /** Sends Access-Control-Allow-Credentials, so cookies and auth headers may cross origins. */
  credentials?: boolean;
}

const PREFLIGHT_MAX_AGE = "600";

/**
 * CORS for the router's HTTP routes. Returns true when it answered a preflight itself; every
 * other request (a plain OPTIONS included) goes on to the actor with the CORS headers set.
 */
export function createCors(options: CorsOptions | undefined) {
  if (!options) return undefined;
  const isAllowed = originMatcher(options, "actorMiddleware");

  return function applyCors(req: IncomingMessage, res: ServerResponse): boolean {
    const origin = req.headers.origin;
    res.appendHeader("vary", "Origin");
    if (typeof origin !== "string" || !isAllowed(origin)) return false;
    res.setHeader("access-control-allow-origin", origin);
    if (options.credentials) res.setHeader("access-control-allow-credentials", "true");
    const method = req.headers["access-control-request-method"];
    if (req.method !== "OPTIONS" || typeof method !== "string") return false;
    res.setHeader("access-control-allow-methods", method);
    const headers = req.headers["access-control-request-headers"];
    if (typeof headers === "string" && headers !== "") res.setHeader("access-control-allow-headers", headers);
    res.setHeader("access-control-max-age", PREFLIGHT_MAX_AGE);
    res.appendHeader("vary", "Access-Control-Request-Method, Access-Control-Request-Headers");
    res.writeHead(204, { "content-length": "0" });
    res.end();
    return true;
  };
}

/** Whether `cors.origin` lists an origin; compared exactly, as browsers serialize it. */
export function originMatcher(options: Pick<CorsOptions, "origin">, fn: string): (origin: string) => boolean {
  const allowed = options?.origin;
  if (allowed !== true && typeof allowed !== "string" && !Array.isArray(allowed)) {
    throw new TypeError(`${fn}(): cors.origin must be a string, an array of strings or true`);
  }
  if (allowed === true) return () => true;
  if (typeof allowed === "string") return (origin) => origin === allowed;
  return (origin) => allowed.includes(origin);
}
