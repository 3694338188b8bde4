import { errorFromResponse } from "../errors";
import { HEADER_CONN_PARAMS, HEADER_QUERY, RAW_HTTP_PATH, RESOLVE_PATH } from "../protocol";
import { buildClient, type Client, type Transport } from "./core";

export interface ClientOptions {
  /** The fetch to use; defaults to the global one. */
  fetch?: typeof fetch;
}

const BODYLESS = new Set(["GET", "HEAD"]);

/** A client for actors behind `actorMiddleware`, mounted at `endpoint` (e.g. "http://host:3000/registry"). */
export function createClient<R = unknown>(endpoint: string, options: ClientOptions = {}): Client<R> {
  const base = endpoint.replace(/\/+$/, "");
  const doFetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));

  const routerHeaders = (query: unknown, params: unknown, from?: HeadersInit) => {
    const headers = new Headers(from);
    headers.set(HEADER_QUERY, JSON.stringify(query));
    if (params !== undefined) headers.set(HEADER_CONN_PARAMS, JSON.stringify(params));
    return headers;
  };

  const transport: Transport = {
    async fetch(query, params, path, request, init = {}) {
      const method = (init.method ?? request?.method ?? "GET").toUpperCase();
      // As with `new Request(request, init)`, init.headers replaces the request's headers.
      const headers = routerHeaders(query, params, init.headers ?? request?.headers);
      let body = init.body;
      if (body === undefined && request && request.body && !BODYLESS.has(method)) body = await request.arrayBuffer();
      const fetchInit: RequestInit & { duplex?: "half" } = {
        ...init,
        method,
        headers,
        body,
        signal: init.signal ?? request?.signal,
      };
      if (typeof ReadableStream !== "undefined" && body instanceof ReadableStream) fetchInit.duplex = "half";
      return doFetch(base + RAW_HTTP_PATH + path, fetchInit);
    },
    async resolve(query, params) {
      const response = await doFetch(base + RESOLVE_PATH, { method: "POST", headers: routerHeaders(query, params) });
      if (!response.ok) throw await errorFromResponse(response);
      const { actorId } = (await response.json()) as { actorId: string };
      return actorId;
    },
  };
  return buildClient(transport) as Client<R>;
}
