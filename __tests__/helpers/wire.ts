import type { Response as TestResponse } from "supertest";

/** The four actor query shapes of SPEC §2, as JSON header values. */
export const q = {
  get: (name: string, key: string[]) => JSON.stringify({ getForKey: { name, key } }),
  getOrCreate: (name: string, key: string[], input?: unknown) =>
    JSON.stringify({ getOrCreateForKey: { name, key, input } }),
  create: (name: string, key: string[], input?: unknown) => JSON.stringify({ create: { name, key, input } }),
  getForId: (name: string, actorId: string) => JSON.stringify({ getForId: { name, actorId } }),
};

export const RAW = "/registry/actors/raw/http";
export const QUERY = "X-RivetKit-Actor-Query";

/** Asserts the SPEC §5 error shape as a user sees it on the wire. */
export function expectWireError(res: TestResponse, status: number, code: string) {
  expect({ status: res.status, code: res.body?.code }).toEqual({ status, code });
  expect(res.headers["content-type"]).toMatch(/^application\/json\b/);
  expect(typeof res.body.message).toBe("string");
  for (const field of Object.keys(res.body)) expect(["code", "message", "metadata"]).toContain(field);
}

/** Asserts the SPEC §5 error shape of a W3C Response (clients); returns the body. */
export async function expectErrorResponse(res: Response, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.ok).toBe(false);
  expect(res.headers.get("content-type")).toMatch(/^application\/json\b/);
  const body = (await res.json()) as { code: string; message: string; metadata?: unknown };
  expect(body.code).toBe(code);
  expect(typeof body.message).toBe("string");
  return body;
}

/** Silences and records console.error, where internal errors are logged. */
export function captureErrorLog() {
  const spy = jest.spyOn(console, "error").mockImplementation(() => {});
  return {
    /** Everything logged so far, stringified (stacks included). */
    text: () =>
      spy.mock.calls
        .flat()
        .map((a) => (a instanceof Error ? `${a.message}\n${a.stack}` : String(a)))
        .join("\n"),
    restore: () => spy.mockRestore(),
  };
}
