import type { IncomingMessage } from "node:http";

/**
 * The socket express-ws hands a route: a `ws` 7 or 8 WebSocket. Public types name it without
 * importing `ws`, so a TypeScript consumer needs no `@types/ws`; the library reads it through
 * ws-compat.ts.
 */
export interface ExpressWsSocket {
  readonly readyState: number;
}

/** What express-ws adds to the request of an accepted upgrade. */
export type ExpressWsRequest = IncomingMessage & { ws?: ExpressWsSocket; wsHandled?: boolean; baseUrl?: string };
