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
/** Where the nodes of a cluster send each other forwarded requests (signed; SPEC §9). */
export const CLUSTER_HTTP_PATH = "/actors/cluster/http";
/** Where a node relays a WebSocket to the actor's owner (signed; SPEC §9). */
export const CLUSTER_WEBSOCKET_PATH = "/actors/cluster/websocket";
/**
 * On the answer to a forwarded request that no actor saw because this node does not (or no longer)
 * serve the actor: its error code. The edge may then place the request again; clients never see it.
 */
export const CLUSTER_UNSERVED_HEADER = "x-rivetkit-cluster-unserved";

const CONTROL = /[\t\n\r]/;
const CONTROLS = /[\t\n\r]/g;
/** A URL parser trims trailing C0 controls and spaces from its whole input, which ends with the path. */
const TRAILING_TRIMMED = /[\u0000-\u0020]+$/;
/** `.`, `..` or their `%2e` spellings as a whole segment, between `/` or `\` (a URL parser's slashes). */
const DOT_SEGMENT = /[/\\](?:\.|%2e){1,2}(?=[/\\?]|$)/i;
const RESOLVE_BASE = "http://actor";

const isSlash = (code: number) => code === 47 /* / */ || code === 92; /* \ */

function leadingSlashes(path: string): number {
  let n = 0;
  while (isSlash(path.charCodeAt(n))) n++;
  return n;
}

/**
 * The path and query an actor sees (SPEC §2): `//a` → `/a`, `` → `/`, exactly one leading slash
 * whatever the input, dot segments resolved, `#` kept as `%23`, percent-escapes kept.
 * A URL parser reads `\` as `/` and deletes tabs and newlines, and resolving `.` or `..` can empty
 * the first segment (`/.//evil.com` → `//evil.com`, another host to `new URL(path, base)`),
 * so the leading slashes are stripped again once dot segments are resolved. Trailing spaces and
 * controls are escaped as the parser escapes them elsewhere: trimmed, `/.. ` would become `/..`
 * and step out of the route it is appended to.
 */
export function actorPath(pathAndSearch: string): string {
  let path = pathAndSearch;
  if (CONTROL.test(path)) path = path.replace(CONTROLS, "");
  if (path.includes("#")) path = path.replace(/#/g, "%23");
  if (TRAILING_TRIMMED.test(path)) path = path.replace(TRAILING_TRIMMED, escapeAll);
  path = "/" + path.slice(leadingSlashes(path));
  if (!DOT_SEGMENT.test(path)) return path;
  const url = new URL(path, RESOLVE_BASE);
  return "/" + url.pathname.slice(leadingSlashes(url.pathname)) + url.search;
}

function escapeAll(text: string): string {
  let escaped = "";
  for (let i = 0; i < text.length; i++) escaped += "%" + text.charCodeAt(i).toString(16).toUpperCase().padStart(2, "0");
  return escaped;
}

/**
 * JSON for a header value: header values are byte strings, so characters past U+007F travel as
 * `\uXXXX` escapes, which JSON.parse reads back unchanged (a key like ["日本"] would otherwise throw).
 */
export function headerJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}
