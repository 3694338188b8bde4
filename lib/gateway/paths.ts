/** The routes of RivetKit's client protocol under the mount (SPEC §10). */
export const METADATA_PATH = "/metadata";
export const ACTORS_PATH = "/actors";
const GATEWAY_PREFIX = "/gateway/";
const KINDS = ["request", "websocket", "action", "connect"] as const;
export type GatewayKind = (typeof KINDS)[number];

export interface GatewayRoute {
  /** What follows `/gateway/`: an actor id (maybe `id@token`) or, with `rvt-*` parameters, a name. Still percent-encoded. */
  segment: string;
  /** `request` and `websocket` are the raw handlers; `action` and `connect` are RivetKit features we refuse clearly. */
  kind: GatewayKind;
  /** Everything after the kind: for `request` and `websocket`, the actor's path and query, as sent. */
  rest: string;
}

/** `/gateway/{segment}/{kind}{rest}`, or undefined for any other path. */
export function parseGatewayPath(url: string): GatewayRoute | undefined {
  if (!url.startsWith(GATEWAY_PREFIX)) return undefined;
  const q = url.indexOf("?");
  const pathname = q === -1 ? url : url.slice(0, q);
  const slash = pathname.indexOf("/", GATEWAY_PREFIX.length);
  if (slash === -1) return undefined;
  const segment = pathname.slice(GATEWAY_PREFIX.length, slash);
  for (const kind of KINDS) {
    const end = slash + 1 + kind.length;
    if (pathname.startsWith(kind, slash + 1) && (end === pathname.length || pathname[end] === "/")) {
      return { segment, kind, rest: url.slice(end) };
    }
  }
  return undefined;
}
