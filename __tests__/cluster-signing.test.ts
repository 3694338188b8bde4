import { FORWARD_TTL_MS, forwardSigner, forwardVerifier, signForward } from "../lib/cluster/signing";
import type { ForwardClaims } from "../lib/cluster/types";

const SECRET = "signing-test-secret-0123456789";
const claims = (path = "/", auth: unknown = { user: "ada", roles: ["admin"] }): ForwardClaims => ({
  actorId: "3f1c0a9e-7d52-4f0e-9a57-2b8d7c1e6f10",
  name: "counter",
  auth,
  origin: "http://example.test",
  method: "GET",
  path,
});

describe("forwarded-request signatures, signed once and verified once per token", () => {
  beforeEach(() => {
    jest.useFakeTimers({ now: Date.UTC(2030, 0, 1) });
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  test("an edge reuses a token for the same request for a second, then signs anew; other requests get their own", () => {
    const sign = forwardSigner(SECRET);
    const first = sign(claims());
    expect(sign(claims())).toBe(first);
    expect(sign(claims("/other"))).not.toBe(first);
    expect(sign(claims("/", { user: "grace" }))).not.toBe(first);
    jest.advanceTimersByTime(1001);
    const later = sign(claims());
    expect(later).not.toBe(first);
    // Either is accepted, with the full lifetime from when it was signed.
    const verify = forwardVerifier(SECRET);
    expect(verify(first)).toEqual(claims());
    expect(verify(later)).toEqual(claims());
  });

  test("a token verified before is accepted again until it expires, never after", () => {
    const verify = forwardVerifier(SECRET);
    const token = signForward(SECRET, claims());
    expect(verify(token)).toEqual(claims());
    jest.advanceTimersByTime(FORWARD_TTL_MS - 1);
    expect(verify(token)).toEqual(claims());
    jest.advanceTimersByTime(2);
    expect(verify(token)).toBeUndefined();
    expect(verify(token)).toBeUndefined();
  });

  test("each verification hands out claims of its own: an owner that changes one request's auth data changes no other's", () => {
    const verify = forwardVerifier(SECRET);
    const token = signForward(SECRET, claims());
    const first = verify(token)!;
    (first.auth as { roles: string[] }).roles.push("root");
    expect(verify(token)!.auth).toEqual({ user: "ada", roles: ["admin"] });
  });

  test("a remembered token never vouches for another: forged, re-signed with another secret, or truncated", () => {
    const verify = forwardVerifier(SECRET);
    const token = signForward(SECRET, claims());
    expect(verify(token)).toBeDefined();
    const [payload, mac] = token.split(".");
    const flipped = mac.replace(/^./, (c) => (c === "A" ? "B" : "A"));
    const tampered = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, "base64url").toString()), path: "/admin" })).toString("base64url");
    for (const forged of [
      `${payload}.${flipped}`,
      `${tampered}.${mac}`,
      signForward("another-secret-0123456789", claims()),
      payload,
      `${payload}.`,
      undefined,
    ]) {
      expect(verify(forged)).toBeUndefined();
    }
    expect(verify(token)).toEqual(claims());
  });
});
