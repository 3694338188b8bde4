import type { IncomingMessage, ServerResponse } from "node:http";
import { errors } from "../errors";
import { buildRequest } from "../http/request";
import { refuseBody } from "../http/too-large";

/** Signals that the body was over the limit and a 413 has been sent. */
export const REFUSED = Symbol("refused");

/** The request body as a JSON object, read within `limit` bytes (also when a body parser ran first). */
export async function readJsonObject(
  req: IncomingMessage,
  res: ServerResponse,
  url: string,
  limit: number,
): Promise<Record<string, unknown> | typeof REFUSED> {
  if (Number(req.headers["content-length"]) > limit) {
    refuseBody(req, res, limit);
    return REFUSED;
  }
  const built = buildRequest(req, res, url, limit);
  let text: string;
  try {
    text = await built.request.text();
  } catch (err) {
    if (!built.overflowed) throw err;
    refuseBody(req, res, limit);
    return REFUSED;
  } finally {
    built.dispose();
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw errors.invalidRequest("The request body is not valid JSON");
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw errors.invalidRequest("The request body must be a JSON object");
  }
  return value as Record<string, unknown>;
}
