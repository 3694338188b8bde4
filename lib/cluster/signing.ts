import { createHmac, timingSafeEqual } from "node:crypto";
import type { ForwardClaims } from "./types";

/** The header that carries a forwarded request's signed claims; X-RivetKit-* so no actor ever sees it. */
export const FORWARD_HEADER = "x-rivetkit-cluster-forward";
/** A forwarded request is accepted this long after it was signed (clocks of the nodes must agree within it). */
export const FORWARD_TTL_MS = 30_000;

const VERSION = 1;

interface Signed extends ForwardClaims {
  v: number;
  /** Expiry, ms since the epoch. */
  exp: number;
}

/** `base64url(JSON claims) "." base64url(HMAC-SHA256(secret, that JSON))`. */
export function signForward(secret: string, claims: ForwardClaims, now = Date.now()): string {
  const payload = Buffer.from(JSON.stringify({ ...claims, v: VERSION, exp: now + FORWARD_TTL_MS } satisfies Signed)).toString("base64url");
  return `${payload}.${mac(secret, payload)}`;
}

/** The claims of a token signed with `secret` that has not expired; undefined for anything else. */
export function verifyForward(secret: string, token: string | undefined, now = Date.now()): ForwardClaims | undefined {
  const text = signedText(secret, token);
  return text === undefined ? undefined : claimsOf(text, now);
}

/** A signed token is reused for the same claims this long, so it arrives with most of FORWARD_TTL_MS left. */
const REUSE_MS = 1000;
/** Distinct tokens a signer or verifier remembers (one per actor, path and auth data in use). */
const MAX_REMEMBERED = 1000;

/**
 * signForward for one secret, reusing the token of the same claims for up to REUSE_MS: a busy
 * actor's hops cost one HMAC a second instead of one each.
 */
export function forwardSigner(secret: string): (claims: ForwardClaims) => string {
  const recent = new Map<string, { token: string; until: number }>();
  return (claims) => {
    const now = Date.now();
    const key = JSON.stringify(claims);
    const hit = recent.get(key);
    if (hit && now < hit.until) return hit.token;
    const token = signForward(secret, claims, now);
    remember(recent, key, { token, until: now + REUSE_MS });
    return token;
  };
}

/**
 * verifyForward for one secret, remembering the tokens it verified: one seen again (the edge
 * reuses them) skips the HMAC, and still gets claims of its own and the expiry check.
 */
export function forwardVerifier(secret: string): (token: string | undefined) => ForwardClaims | undefined {
  const verified = new Map<string, string>();
  return (token) => {
    if (typeof token !== "string") return undefined;
    let text = verified.get(token);
    if (text === undefined) {
      text = signedText(secret, token);
      if (text === undefined) return undefined;
      remember(verified, token, text);
    }
    const claims = claimsOf(text, Date.now());
    if (!claims) verified.delete(token);
    return claims;
  };
}

function remember<V>(map: Map<string, V>, key: string, value: V) {
  // Deleted first, so that the Map's order is the order of use and the oldest go first.
  map.delete(key);
  map.set(key, value);
  if (map.size > MAX_REMEMBERED) map.delete(map.keys().next().value!);
}

/** The JSON a token carries, if its HMAC is right. */
function signedText(secret: string, token: string | undefined): string | undefined {
  if (typeof token !== "string") return undefined;
  const dot = token.indexOf(".");
  if (dot <= 0) return undefined;
  const payload = token.slice(0, dot);
  const given = Buffer.from(token.slice(dot + 1), "base64url");
  const expected = Buffer.from(mac(secret, payload), "base64url");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  return Buffer.from(payload, "base64url").toString("utf8");
}

/** Signed JSON to claims, if well-formed and not expired. */
function claimsOf(text: string, now: number): ForwardClaims | undefined {
  let signed: Signed;
  try {
    signed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (signed?.v !== VERSION || typeof signed.exp !== "number" || signed.exp < now) return undefined;
  const { actorId, name, auth, origin, method, path, via, socket, remembered } = signed;
  if (![actorId, name, origin, method, path].every((field) => typeof field === "string")) return undefined;
  if (via !== undefined && via !== "gateway") return undefined;
  if (socket !== undefined && socket !== true) return undefined;
  if (remembered !== undefined && remembered !== true) return undefined;
  return { actorId, name, auth, origin, method, path, ...(via && { via }), ...(socket && { socket }), ...(remembered && { remembered }) };
}

function mac(secret: string, payload: string): string {
  return createHmac("sha256", secret).update(payload).digest("base64url");
}
