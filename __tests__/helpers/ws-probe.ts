import { actor, type ActorContext, type ActorOptions } from "express-actors";

export interface Recorded {
  type: string;
  event: Event;
  readyState: number;
}

/** One server-side socket as onWebSocket received it, with every event it dispatched. */
export interface ServerSide {
  c: ActorContext<any>;
  ws: WebSocket;
  request: Request;
  auth: unknown;
  events: Recorded[];
  /** readyState inside onWebSocket. */
  readyStateInHandler: number;
  /** Resolves with the close event. */
  closed: Promise<CloseEvent>;
}

export type Script = (side: ServerSide) => unknown;

/**
 * An actor whose onWebSocket records everything and then runs the script registered for its
 * first key segment, so one registry serves many tests. The recorder listens from inside
 * onWebSocket, so it sees `open` and every held message.
 */
export function probeActor(options: ActorOptions = {}, onAuth: ((args: any) => unknown) | null = () => null) {
  const scripts = new Map<string, Script>();
  const sides: ServerSide[] = [];
  const waiters: Array<(side: ServerSide) => void> = [];

  const definition = actor({
    state: { log: [] as string[] },
    ...(onAuth ? { onAuth } : {}),
    onWebSocket: (c, ws, { request, auth }) => {
      let closeEvent!: (event: CloseEvent) => void;
      const side: ServerSide = {
        c,
        ws,
        request,
        auth,
        events: [],
        readyStateInHandler: ws.readyState,
        closed: new Promise((resolve) => (closeEvent = resolve)),
      };
      for (const type of ["open", "message", "error", "close"]) {
        ws.addEventListener(type, (event) => {
          side.events.push({ type, event, readyState: ws.readyState });
          if (type === "close") closeEvent(event as CloseEvent);
        });
      }
      sides.push(side);
      const waiter = waiters.shift();
      if (waiter) waiter(side);
      return scripts.get(c.key[0] ?? "")?.(side) as void | Promise<void>;
    },
    options,
  });

  return {
    definition,
    sides,
    /** Registers the script for actors whose first key segment is `key`. */
    script(key: string, script: Script) {
      scripts.set(key, script);
    },
    /** The next server side to arrive (or one that already did and was not taken). */
    next(): Promise<ServerSide> {
      return new Promise((resolve) => waiters.push(resolve));
    },
  };
}

export const types = (side: ServerSide) => side.events.map((e) => e.type);
export const messageData = (side: ServerSide) =>
  side.events.filter((e) => e.type === "message").map((e) => (e.event as MessageEvent).data);
