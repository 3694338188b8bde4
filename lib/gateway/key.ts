import { errors } from "../errors";

/**
 * Actor keys as RivetKit's client writes them (SPEC §10). The manager API carries the serialized
 * form: parts joined with `/`, `\` and `/` inside a part escaped with `\`, an empty part written
 * `\0`, and `[]` written `/`. The query gateway of 2.3.x clients carries `rvt-key`: the parts
 * joined with `,` and nothing escaped.
 */
const EMPTY_KEY = "/";

export function serializeKey(key: readonly string[]): string {
  if (key.length === 0) return EMPTY_KEY;
  return key.map((part) => (part === "" ? "\\0" : part.replace(/\\/g, "\\\\").replace(/\//g, "\\/"))).join("/");
}

/**
 * The inverse of serializeKey, and only of it: any other spelling (an unknown escape, a dangling
 * `\`, an unescaped empty part) would name a key some other way, so it is refused.
 */
export function parseSerializedKey(text: string): string[] {
  if (text === EMPTY_KEY) return [];
  const key: string[] = [];
  let part = "";
  // A `\0` seen in the current part; the round trip below checks it stood alone.
  let emptyMark = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (char === "/") {
      key.push(emptyMark ? "" : part);
      part = "";
      emptyMark = false;
    } else if (char !== "\\") {
      part += char;
    } else {
      const next = text[++i];
      if (next === "0") emptyMark = true;
      else if (next === "\\" || next === "/") part += next;
      else throw badKey(text);
    }
  }
  key.push(emptyMark ? "" : part);
  if (serializeKey(key) !== text) throw badKey(text);
  return key;
}

/** `rvt-key`: absent is `[]`; present, it is split on every `,` (the client cannot escape one). */
export function parseQueryKey(value: string | undefined): string[] {
  return value === undefined ? [] : value.split(",");
}

function badKey(text: string) {
  return errors.invalidQuery(`The key ${JSON.stringify(text)} is not in the RivetKit client's serialized form`);
}
