/**
 * The WebSocket createClient uses when none is given, in Node: `ws`, also where Node has a global
 * WebSocket, because only `ws` takes the upgrade headers (and TLS options) a Node client needs.
 * The browser build swaps this file for default-websocket.browser.ts.
 */
export async function defaultWebSocket(): Promise<unknown> {
  const ws = await import("ws");
  return ws.WebSocket;
}
