import { checkDepth } from "../registry/query";
import { errors } from "../errors";

/** RivetKit's internal headers (conn params, token, target, original URL): never shown to an actor. */
const INTERNAL_PREFIX = "x-rivet-";
export const CONN_PARAMS_HEADER = "x-rivet-conn-params";

/** Drops every `x-rivet-*` header; X-RivetKit-* ones are already held back when headers are copied. */
export function dropInternalHeaders(headers: Headers) {
  const names: string[] = [];
  headers.forEach((_value, name) => {
    if (name.startsWith(INTERNAL_PREFIX)) names.push(name);
  });
  for (const name of names) headers.delete(name);
}

/** The first `x-rivet-conn-params` header of rawHeaders, as a JSON value (undefined when absent). */
export function connParamsHeader(raw: string[], maxSize: number): unknown {
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].toLowerCase() === CONN_PARAMS_HEADER) return parseConnParams(raw[i + 1], "x-rivet-conn-params", maxSize);
  }
  return undefined;
}

/** JSON conn params within `maxSize` characters (maxConnParamsSize) and the nesting limit. */
export function parseConnParams(text: string, what: string, maxSize: number): unknown {
  if (text.length > maxSize) throw errors.invalidQuery(`${what} is ${text.length} characters long; the limit is ${maxSize}`);
  let params: unknown;
  try {
    params = JSON.parse(text);
  } catch {
    throw errors.invalidQuery(`${what} is not valid JSON`);
  }
  checkDepth(params, what);
  return params;
}
