import { actor, Forbidden, UserError } from "express-actors";

/** A public counter: `GET /count`, `POST /increment`. */
export const counter = actor({
  state: { count: 0 },
  // Actors are private by default; returning null makes this one public.
  onAuth: () => null,
  onFetch: (c, request) => {
    const { pathname } = new URL(request.url);
    if (request.method === "GET" && pathname === "/count") return Response.json({ count: c.state.count });
    if (request.method === "POST" && pathname === "/increment") {
      c.state.count++; // saved before this response goes out
      return Response.json({ count: c.state.count });
    }
    return new Response("not found", { status: 404 });
  },
});

/** `GET /events`: a Server-Sent Events stream of the counter with the same key, once a second. */
export const feed = actor({
  state: { streamsOpened: 0 },
  onAuth: () => null,
  onFetch: (c, request) => {
    if (new URL(request.url).pathname !== "/events") return new Response("not found", { status: 404 });
    const stream = ++c.state.streamsOpened;
    // c.client() calls other actors in process (no HTTP hop, no onAuth).
    const counterOf = c.client().counter.getOrCreate(c.key);
    const encoder = new TextEncoder();
    let timer: NodeJS.Timeout | undefined;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        const tick = async () => {
          const { count } = (await (await counterOf.fetch("/count")).json()) as { count: number };
          const event = { stream, count, time: new Date().toISOString() };
          controller.enqueue(encoder.encode(`data: ${JSON.stringify(event)}\n\n`));
        };
        timer = setInterval(() => {
          tick().catch((err) => {
            clearInterval(timer);
            controller.error(err); // ends the response; the error is logged server-side
          });
        }, 1000);
        return tick(); // the first event goes out at once
      },
      // Runs when the client disconnects: without it the timer would tick forever.
      cancel() {
        clearInterval(timer);
      },
    });
    return new Response(body, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
    });
  },
});

/** A shopping cart with no onAuth: unreachable through the public router, only via the legacy route. */
export const cart = actor({
  state: { items: [] as string[] },
  onFetch: async (c, request) => {
    const { pathname } = new URL(request.url);
    if (pathname !== "/items") return new Response("not found", { status: 404 });
    if (request.method === "POST") {
      const { item } = (await request.json().catch(() => ({}))) as { item?: unknown };
      // A UserError reaches the client as 400 {"code":"invalid_item",...}.
      if (typeof item !== "string" || item === "") throw new UserError("item must be a non-empty string", { code: "invalid_item" });
      c.state.items.push(item);
    }
    return Response.json({ cart: c.key[0], items: c.state.items });
  },
});

export interface ChatMessage {
  from: string;
  text: string;
  /** ISO time the server received it. */
  time: string;
}

/** What the chat actor sends, one JSON text frame each. Clients send plain text. */
export type ChatEvent =
  | { type: "history"; messages: ChatMessage[]; online: string[] }
  | ({ type: "message" } & ChatMessage)
  | { type: "join" | "leave"; name: string; online: string[]; time: string }
  | { type: "error"; message: string };

export const CHAT_HISTORY = 50;
export const CHAT_MAX_LENGTH = 500;
/** A room the chat refuses to everyone: the page's "join a forbidden room" button shows the 4403 close. */
export const STAFF_ROOM = "staff";

/**
 * A chat room per key, over WebSockets: `client.chat.getOrCreate([room], { params: { name } }).websocket()`.
 * A new socket gets the last 50 messages (kept in state, so they survive restarts), every message
 * is broadcast to every socket of the room, and joins and leaves are announced.
 */
export const chat = actor({
  state: { messages: [] as ChatMessage[] },
  // The room's open sockets, for this activation only: sockets cannot be persisted.
  createVars: () => ({ members: new Map<WebSocket, string>() }),
  // Public, but a name is required. A UserError refuses the socket: it closes with 4400 "invalid_name".
  onAuth: (_args, params) => {
    const name = (params as { name?: unknown } | undefined)?.name;
    const trimmed = typeof name === "string" ? name.trim() : "";
    if (trimmed.length < 1 || trimmed.length > 32) {
      throw new UserError("name must be 1 to 32 characters", { code: "invalid_name" });
    }
    return { name: trimmed };
  },
  onWebSocket: (c, ws, { auth }) => {
    // Thrown here (the room is the actor's key, which onAuth does not see): closes with 4403 "forbidden".
    if (c.key[0] === STAFF_ROOM) throw new Forbidden("The staff room is closed to the public");
    const name = auth?.name ?? "server"; // the server-side client skips onAuth
    const { members } = c.vars;
    const send = (socket: WebSocket, event: ChatEvent) => {
      if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(event));
    };
    const broadcast = (event: ChatEvent) => {
      for (const socket of members.keys()) send(socket, event);
    };
    const online = () => [...members.values()];

    members.set(ws, name);
    send(ws, { type: "history", messages: c.state.messages, online: online() });
    broadcast({ type: "join", name, online: online(), time: new Date().toISOString() });

    ws.addEventListener("message", (event) => {
      if (typeof event.data !== "string") return send(ws, { type: "error", message: "send text messages" });
      const text = event.data.trim();
      if (text === "") return;
      if (text.length > CHAT_MAX_LENGTH) {
        return send(ws, { type: "error", message: `messages are limited to ${CHAT_MAX_LENGTH} characters` });
      }
      const message: ChatMessage = { from: name, text, time: new Date().toISOString() };
      // Saved automatically within stateSaveInterval (1 s), and when a socket closes.
      c.state.messages.push(message);
      if (c.state.messages.length > CHAT_HISTORY) c.state.messages.splice(0, c.state.messages.length - CHAT_HISTORY);
      broadcast({ type: "message", ...message });
    });
    ws.addEventListener("close", () => {
      members.delete(ws);
      broadcast({ type: "leave", name, online: online(), time: new Date().toISOString() });
    });
  },
});
