/** In browsers: the page's own WebSocket (bundled in place of default-websocket.ts). */
export async function defaultWebSocket(): Promise<unknown> {
  if (typeof globalThis.WebSocket !== "function") throw new Error("express-actors: this browser has no WebSocket");
  return globalThis.WebSocket;
}
