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
  if (typeof token !== "string") return undefined;
  const dot = token.indexOf(".");
  if (dot <= 0) return undefined;
  const payload = token.slice(0, dot);
  const given = Buffer.from(token.slice(dot + 1), "base64url");
  const expected = Buffer.from(mac(secret, payload), "base64url");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  let signed: Signed;
  try {
    signed = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
  } catch {
    return undefined;
  }
  if (signed?.v !== VERSION || typeof signed.exp !== "number" || signed.exp < now) return undefined;
  const { actorId, name, auth, origin, method, path, via, socket } = signed;
  if (![actorId, name, origin, method, path].every((field) => typeof field === "string")) return undefined;
  if (via !== undefined && via !== "gateway") return undefined;
  if (socket !== undefined && socket !== true) return undefined;
  return { actorId, name, auth, origin, method, path, ...(via && { via }), ...(socket && { socket }) };
}

function mac(secret: string, payload: string): string {
  return createHmac("sha256", secret).update(payload).digest("base64url");
}
