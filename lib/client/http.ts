import { errorFromResponse } from "../errors";
import { HEADER_CONN_PARAMS, HEADER_QUERY, headerJson, RAW_HTTP_PATH, RAW_WEBSOCKET_PATH, RESOLVE_PATH } from "../protocol";
import { buildClient, mergeInit, type Client, type Transport } from "./core";

export interface ClientOptions {
  /** The fetch to use; defaults to the global one. */
  fetch?: typeof fetch;
}

/** A client for actors behind `actorMiddleware`, mounted at `endpoint` (e.g. "http://host:3000/registry"). */
export function createClient<R = unknown>(endpoint: string, options: ClientOptions = {}): Client<R> {
  const base = endpoint.replace(/\/+$/, "");
  const doFetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));

  const setRouterHeaders = (headers: Headers, query: unknown, params: unknown) => {
    headers.set(HEADER_QUERY, headerJson(query));
    if (params !== undefined) headers.set(HEADER_CONN_PARAMS, headerJson(params));
    return headers;
  };

  const transport: Transport = {
    async fetch(query, params, path, request, init) {
      const merged = mergeInit(request, init);
      setRouterHeaders(merged.headers, query, params);
      // A Request's body is buffered: browsers cannot stream an upload over HTTP/1.1.
      if (request?.body && merged.body === request.body) merged.body = await request.arrayBuffer();
      return doFetch(base + RAW_HTTP_PATH + path, merged);
    },
    async resolve(query, params) {
      const headers = setRouterHeaders(new Headers(), query, params);
      const response = await doFetch(base + RESOLVE_PATH, { method: "POST", headers });
      if (!response.ok) throw await errorFromResponse(response);
      const { actorId } = (await response.json()) as { actorId: string };
      return actorId;
    },
    async websocket(query, params, path, protocols) {
      const WebSocketImpl = await platformWebSocket();
      const entries = ["rivetkit", "query." + protocolJson(query)];
      if (params !== undefined) entries.push("conn_params." + protocolJson(params));
      entries.push("encoding.json", ...protocols);
      const socket = new WebSocketImpl(base.replace(/^http/, "ws") + RAW_WEBSOCKET_PATH + path, entries);
      socket.binaryType = "blob";
      // `ws` is an EventEmitter: an "error" nobody listens to (server unreachable) would crash the
      // process, where a browser's WebSocket just fires it. The close event (1006) still follows.
      socket.addEventListener("error", () => {});
      return socket;
    },
  };
  return buildClient(transport) as Client<R>;
}

/** A protocol entry must be an HTTP token: encodeURIComponent leaves "(" and ")", which are not. */
function protocolJson(value: unknown): string {
  return encodeURIComponent(JSON.stringify(value)).replace(/\(/g, "%28").replace(/\)/g, "%29");
}

/** The platform's WebSocket; on Node 20, which has none, the `ws` package (kept out of browser bundles). */
async function platformWebSocket(): Promise<typeof WebSocket> {
  if (typeof globalThis.WebSocket === "function") return globalThis.WebSocket;
  const ws = await import("ws");
  return ws.WebSocket as unknown as typeof WebSocket;
}
