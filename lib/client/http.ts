import { errorFromResponse } from "../errors";
import { HEADER_CONN_PARAMS, HEADER_QUERY, headerJson, RAW_HTTP_PATH, RAW_WEBSOCKET_PATH, RESOLVE_PATH } from "../protocol";
import { buildClient, mergeInit, type Client, type Transport } from "./core";
import { defaultWebSocket } from "./default-websocket";
import { clientHeaders, layerHeaders, type ClientHeaders } from "./headers";
import { openWebSocket, type WebSocketConstructor } from "./open-websocket";

export interface ClientOptions {
  /** The fetch to use; defaults to the global one. */
  fetch?: typeof fetch;
  /**
   * Sent on every HTTP request and, with a ws-compatible WebSocket (Node's default), on the
   * WebSocket upgrade; browsers cannot set headers on a WebSocket. A function is called before
   * each request and may be async. Per-call headers of `handle.fetch` replace same-named ones;
   * X-RivetKit-* headers are the client's own and are never taken from here.
   */
  headers?: ClientHeaders;
  /**
   * The WebSocket constructor, called `new WebSocket(url, protocols)`, plus `{ headers }` as a third
   * argument when it is `ws` or a subclass. Defaults to `ws` in Node, the global one in browsers.
   */
  WebSocket?: WebSocketConstructor;
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
      merged.headers = setRouterHeaders(layerHeaders(await clientHeaders(options.headers), merged.headers), query, params);
      // A Request's body is buffered: browsers cannot stream an upload over HTTP/1.1.
      if (request?.body && merged.body === request.body) merged.body = await request.arrayBuffer();
      return doFetch(base + RAW_HTTP_PATH + path, merged);
    },
    async resolve(query, params) {
      const headers = setRouterHeaders(await clientHeaders(options.headers), query, params);
      const response = await doFetch(base + RESOLVE_PATH, { method: "POST", headers });
      if (!response.ok) throw await errorFromResponse(response);
      const { actorId } = (await response.json()) as { actorId: string };
      return actorId;
    },
    async websocket(query, params, path, protocols) {
      const headers = await clientHeaders(options.headers);
      const WebSocketImpl = options.WebSocket ?? ((await defaultWebSocket()) as WebSocketConstructor);
      const entries = ["rivetkit", "query." + protocolJson(query)];
      if (params !== undefined) entries.push("conn_params." + protocolJson(params));
      entries.push("encoding.json", ...protocols);
      const socket = openWebSocket(WebSocketImpl, base.replace(/^http/, "ws") + RAW_WEBSOCKET_PATH + path, entries, headers);
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
