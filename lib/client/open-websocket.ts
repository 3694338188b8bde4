/**
 * A WebSocket constructor for createClient: the platform's, `ws`, or a subclass of either (e.g. a
 * `ws` subclass that adds an agent or a CA). A ws-compatible one also gets `{ headers }`.
 */
export type WebSocketConstructor = new (url: string, protocols: string[], options?: { headers: Record<string, string> }) => unknown;

/**
 * `ws` (7 or 8) and its subclasses: their sockets have `ping` and `terminate`, which neither the W3C
 * WebSocket nor undici's has. Only those take the third argument `{ headers }`.
 */
export function isWsCompatible(ctor: WebSocketConstructor): boolean {
  const proto = ctor.prototype as { ping?: unknown; terminate?: unknown } | undefined;
  return typeof proto?.ping === "function" && typeof proto?.terminate === "function";
}

/** `new ctor(url, protocols)`, plus `{ headers }` for a ws-compatible constructor. */
export function openWebSocket(ctor: WebSocketConstructor, url: string, protocols: string[], headers: Headers): WebSocket {
  if (!isWsCompatible(ctor)) return new ctor(url, protocols) as WebSocket;
  return new ctor(url, protocols, { headers: Object.fromEntries(headers) }) as WebSocket;
}
