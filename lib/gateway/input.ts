import { Decoder } from "cbor-x";
import { errors } from "../errors";

/**
 * Creation input as RivetKit's client sends it: the cbor-x encoding of the value, in standard
 * base64 in the `PUT`/`POST /actors` body and in unpadded base64url in `rvt-input`. Our actors
 * take JSON data (SPEC §6), so anything CBOR has and JSON has not is refused, naming the path.
 */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;
/** As deep as the router lets input nest (registry/query.ts), so the same input works on both. */
const MAX_DEPTH = 64;

// Maps stay Maps, so keys that are not strings are caught instead of stringified.
const decoder = new Decoder({ mapsAsObjects: false, useRecords: false });

export function decodeInput(text: string, alphabet: "base64" | "base64url", what: string): unknown {
  const valid = alphabet === "base64" ? BASE64.test(text) : BASE64URL.test(text) && text.length % 4 !== 1;
  if (!valid || text === "") throw errors.invalidQuery(`${what} is not ${alphabet} text`);
  let value: unknown;
  try {
    value = decoder.decode(Buffer.from(text, alphabet));
  } catch (err) {
    throw errors.invalidQuery(`${what} is not valid CBOR: ${(err as Error).message}`);
  }
  return toJson(value, what, 0, new Set());
}

/** A copy made of JSON values only; `seen` catches shared and cyclic references (CBOR tags 28/29). */
function toJson(value: unknown, path: string, depth: number, seen: Set<object>): unknown {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") {
    if (Number.isFinite(value)) return value;
    throw notJson(path, String(value));
  }
  if (typeof value !== "object") throw notJson(path, typeof value);
  if (depth === MAX_DEPTH) throw errors.invalidQuery(`${path} is nested deeper than ${MAX_DEPTH} levels`);
  if (seen.has(value)) throw notJson(path, "a shared or circular reference");
  seen.add(value);
  if (Array.isArray(value)) return value.map((item, i) => toJson(item, `${path}[${i}]`, depth + 1, seen));
  let entries: Iterable<[unknown, unknown]>;
  if (value instanceof Map) entries = value;
  else if (Object.getPrototypeOf(value) === Object.prototype) entries = Object.entries(value);
  else throw notJson(path, `a ${value.constructor?.name ?? "non-plain object"}`);
  const out: Record<string, unknown> = {};
  for (const [name, item] of entries) {
    if (typeof name !== "string") throw notJson(`${path} key ${String(name)}`, `a ${typeof name} key`);
    // JSON drops undefined members, and so do we.
    if (item === undefined) continue;
    // defineProperty keeps a "__proto__" member an own property, as JSON.parse does.
    Object.defineProperty(out, name, { value: toJson(item, `${path}.${name}`, depth + 1, seen), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function notJson(path: string, what: string) {
  return errors.invalidQuery(`${path} is ${what}; creation input must be JSON data`);
}
