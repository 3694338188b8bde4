/**
 * The origin-form of a request target: an absolute-form target (`GET http://host/x HTTP/1.1`)
 * keeps its origin in req.url, where routing and the actor's path need only the path and query.
 * The actor's origin comes from the Host header (originOf), never from the target.
 */
export function stripOrigin(url: string): string {
  if (url.charCodeAt(0) === 47 /* / */) return url;
  const match = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?]*/.exec(url);
  if (!match) return "/" + url;
  const rest = url.slice(match[0].length);
  return rest.charCodeAt(0) === 47 ? rest : "/" + rest;
}
