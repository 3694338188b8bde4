/** Wire names shared by the router and the clients (SPEC §2). */
export const HEADER_QUERY = "x-rivetkit-actor-query";
export const HEADER_QUERY_ALIAS = "x-rivetkit-query";
export const HEADER_ENCODING = "x-rivetkit-encoding";
export const HEADER_CONN_PARAMS = "x-rivetkit-conn-params";
export const INTERNAL_HEADER_PREFIX = "x-rivetkit-";

export const RAW_HTTP_PATH = "/actors/raw/http";
export const RAW_WEBSOCKET_PATH = "/actors/raw/websocket";
export const RESOLVE_PATH = "/actors/resolve";
export const HEALTH_PATH = "/health";

/** `//a` → `/a`, `` → `/`: the actor always sees exactly one leading slash. */
export function normalizePath(path: string): string {
  let start = 0;
  while (path.charCodeAt(start) === 47 /* / */) start++;
  return "/" + path.slice(start);
}

/**
 * JSON for a header value: header values are byte strings, so characters past U+007F travel as
 * `\uXXXX` escapes, which JSON.parse reads back unchanged (a key like ["日本"] would otherwise throw).
 */
export function headerJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}
