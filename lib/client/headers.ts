import { INTERNAL_HEADER_PREFIX } from "../protocol";

/**
 * Headers sent with every request of a client: fixed, or a function called before each request
 * (and each WebSocket) so a token can be refreshed; it may return a promise.
 */
export type ClientHeaders = HeadersInit | (() => HeadersInit | Promise<HeadersInit>);

/** Drops X-RivetKit-* headers: they are the transport's own, so a caller's never reach the wire. */
export function withoutInternal(headers: Headers): Headers {
  for (const name of [...headers.keys()]) {
    if (name.startsWith(INTERNAL_HEADER_PREFIX)) headers.delete(name);
  }
  return headers;
}

/** The client-wide headers for one request, X-RivetKit-* removed. */
export async function clientHeaders(option: ClientHeaders | undefined): Promise<Headers> {
  if (option === undefined) return new Headers();
  return withoutInternal(new Headers(typeof option === "function" ? await option() : option));
}

/** `perCall` over `clientWide`: a name given per call replaces every client-wide value of that name. */
export function layerHeaders(clientWide: Headers, perCall: Headers): Headers {
  const merged = new Headers(clientWide);
  for (const name of perCall.keys()) merged.delete(name);
  for (const [name, value] of perCall) merged.append(name, value);
  return merged;
}
