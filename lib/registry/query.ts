import { errors } from "../errors";
import { DEFAULT_LIMITS, type Limits } from "../limits";
import { keyId } from "../stores/types";

/** The actor query of SPEC §2, exactly as it travels in X-RivetKit-Actor-Query. */
export type ActorQuery =
  | { getForKey: { name: string; key: string[] } }
  | { getOrCreateForKey: { name: string; key: string[]; input?: unknown } }
  | { create: { name: string; key: string[]; input?: unknown } }
  | { getForId: { name: string; actorId: string } };

export type QueryKind = "get" | "getOrCreate" | "create" | "getForId";

export interface ParsedQuery {
  kind: QueryKind;
  name: string;
  key: string[];
  actorId: string;
  input: unknown;
  /** The (name, key) identity; empty for getForId. */
  keyId: string;
}

const KINDS: Record<string, QueryKind> = {
  getForKey: "get",
  getOrCreateForKey: "getOrCreate",
  create: "create",
  getForId: "getForId",
};

export type KeyLimits = Pick<Limits, "maxKeyParts" | "maxKeyPartLength">;
export type QueryLimits = KeyLimits & Pick<Limits, "maxQuerySize">;

/** How deeply creation input and conn params may nest (containers, the outermost counting as one). */
const MAX_INPUT_DEPTH = 64;

/**
 * Clients repeat the same header value request after request, so its parse is kept. Only queries
 * without `input` are kept: input goes to user code, which must get its own copy. The cache is
 * shared by routes with different limits, so the key limits are checked on every call.
 */
const parsedTexts = new Map<string, ParsedQuery>();
const PARSED_TEXTS_MAX = 1024;

export function parseQueryText(text: string, limits: QueryLimits = DEFAULT_LIMITS): ParsedQuery {
  if (text.length > limits.maxQuerySize) {
    throw errors.invalidQuery(`The actor query is ${text.length} characters long; the limit is ${limits.maxQuerySize}`);
  }
  let parsed = parsedTexts.get(text);
  if (!parsed) {
    parsed = parseQueryJson(text);
    if (parsed.input === undefined) {
      if (parsedTexts.size >= PARSED_TEXTS_MAX) parsedTexts.clear();
      Object.freeze(parsed.key);
      parsedTexts.set(text, Object.freeze(parsed));
    }
  }
  checkKeyLimits(parsed.key, limits);
  return parsed;
}

function parseQueryJson(text: string): ParsedQuery {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw errors.invalidQuery("The actor query is not valid JSON");
  }
  return parseQueryValue(value);
}

/** A query given as data (forwarded routes, the server-side client), checked against `limits`. */
export function parseQuery(value: unknown, limits: KeyLimits = DEFAULT_LIMITS): ParsedQuery {
  const parsed = parseQueryValue(value);
  checkKeyLimits(parsed.key, limits);
  return parsed;
}

function parseQueryValue(value: unknown): ParsedQuery {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw errors.invalidQuery("The actor query must be a JSON object");
  }
  const fields = Object.keys(value);
  if (fields.length !== 1 || !Object.prototype.hasOwnProperty.call(KINDS, fields[0])) {
    throw errors.invalidQuery(
      "The actor query must have exactly one of getForKey, getOrCreateForKey, create, getForId",
    );
  }
  const field = fields[0];
  const kind = KINDS[field];
  const body = (value as Record<string, unknown>)[field];
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw errors.invalidQuery(`${field} must be an object`);
  }
  const { name, key, actorId, input } = body as Record<string, unknown>;
  if (typeof name !== "string" || name === "") throw errors.invalidQuery(`${field}.name must be a non-empty string`);
  if (kind === "getForId") {
    if (typeof actorId !== "string" || actorId === "") {
      throw errors.invalidQuery("getForId.actorId must be a non-empty string");
    }
    return { kind, name, key: [], actorId, input: undefined, keyId: "" };
  }
  const parts = parseKey(key, field);
  if (kind === "get") return { kind, name, key: parts, actorId: "", input: undefined, keyId: keyId(name, parts) };
  checkDepth(input, `${field}.input`);
  return { kind, name, key: parts, actorId: "", input, keyId: keyId(name, parts) };
}

/**
 * Refuses data nested deeper than MAX_INPUT_DEPTH with invalid_query, before it reaches onAuth,
 * the store or createState: the state it becomes must stay savable, and serializers recurse.
 */
export function checkDepth(value: unknown, what: string): void {
  if (nestsDeeper(value, MAX_INPUT_DEPTH)) throw errors.invalidQuery(`${what} is nested deeper than ${MAX_INPUT_DEPTH} levels`);
}

/** Recurses at most `levels + 1` deep, whatever the data (a cycle is deeper than any limit). */
function nestsDeeper(value: unknown, levels: number): boolean {
  if (value === null || typeof value !== "object") return false;
  if (levels === 0) return true;
  for (const item of Array.isArray(value) ? value : Object.values(value)) {
    if (nestsDeeper(item, levels - 1)) return true;
  }
  return false;
}

function parseKey(key: unknown, field: string): string[] {
  const parts = typeof key === "string" ? [key] : key;
  if (!Array.isArray(parts) || !parts.every((part) => typeof part === "string")) {
    throw errors.invalidQuery(`${field}.key must be a string or an array of strings`);
  }
  return parts;
}

function checkKeyLimits(key: readonly string[], limits: KeyLimits) {
  if (key.length > limits.maxKeyParts) {
    throw errors.invalidQuery(`The actor key has ${key.length} parts; the limit is ${limits.maxKeyParts}`);
  }
  for (const part of key) {
    if (part.length > limits.maxKeyPartLength) {
      throw errors.invalidQuery(`An actor key part is ${part.length} characters long; the limit is ${limits.maxKeyPartLength}`);
    }
  }
}

export function intentsOf(kind: QueryKind): Array<"get" | "create"> {
  if (kind === "getOrCreate") return ["get", "create"];
  return kind === "create" ? ["create"] : ["get"];
}
