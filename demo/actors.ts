import { actor, UserError } from "express-actors";

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
