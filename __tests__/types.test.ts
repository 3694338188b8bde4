import express from "express";
import WS from "ws";
import { actor, forwardToActor, setup } from "express-actors";
import { createClient, type ActorAccessor, type ActorHandle } from "express-actors/client";

// Compile-time checks: `tsc` (run by `npm test`) and ts-jest fail this file when a typing regresses.
// Calls that would reach the network live in a function that is type-checked but never run.

const counter = actor({ state: { count: 0 }, onAuth: () => null, onFetch: (c) => Response.json(c.state) });
const chatRoom = actor({
  onAuth: ({ intents, params }) => {
    const intent: "get" | "create" | "fetch" | "websocket" = [...intents][0];
    return { intent, params };
  },
  onFetch: (_c, _req, { auth }) => Response.json(auth ?? null),
});
const registry = setup({ use: { counter, chatRoom } });

const typeOnly = () => {
  const client = createClient<typeof registry>("http://localhost:3000/registry");
  const accessor: ActorAccessor = client.counter;
  const handle: ActorHandle = client.chatRoom.getOrCreate(["a"], { params: { token: "t" }, input: { topic: "x" } });
  const response: Promise<Response> = handle.fetch("/count", { method: "POST" });
  const id: Promise<string> = client.counter.get("a").resolve();
  const created: Promise<ActorHandle> = client.counter.create(["b"], { input: 1 });
  client.counter.getForId("some-id").fetch(new URL("http://x/y"));
  client.counter.get().fetch(new Request("http://x/y", { method: "PUT", body: "b" }), { headers: { a: "b" } });

  // @ts-expect-error: a misspelled actor name
  client.countr.get("a");
  // @ts-expect-error: names are case-sensitive
  client.chatroom.get("a");
  // @ts-expect-error: a key is a string or an array of strings
  client.counter.get([1, 2]);
  // @ts-expect-error: create() is async; its handle must be awaited first
  client.counter.create("a").fetch("/");
  // @ts-expect-error: fetch takes a path, a URL or a Request
  handle.fetch(42);

  const server = registry.createServerClient();
  server.chatRoom.get("k").fetch("/");
  // @ts-expect-error: the server-side client is typed the same way
  server.chatroom.get("k");

  // Options: a ws class or subclass, or the platform's WebSocket; headers fixed or from a (async) function.
  class CaWebSocket extends WS {
    constructor(url: string, protocols: string[], options?: WS.ClientOptions) {
      super(url, protocols, { ...options, ca: "…" });
    }
  }
  createClient("http://x", { WebSocket: WS, headers: { cookie: "a=b" } });
  createClient("http://x", { WebSocket: CaWebSocket, headers: [["authorization", "Bearer t"]] });
  createClient("http://x", { WebSocket: globalThis.WebSocket, headers: async () => new Headers() });
  createClient("http://x", { fetch: globalThis.fetch, headers: () => ({ authorization: "Bearer t" }) });
  // @ts-expect-error: headers are a HeadersInit or a function returning one
  createClient("http://x", { headers: 42 });
  // @ts-expect-error: WebSocket is a constructor
  createClient("http://x", { WebSocket: () => new WS("ws://x") });

  // Without the registry type, any name is allowed.
  createClient("http://localhost:3000/registry").anything.get("k");

  const app = express();
  app.all("/rooms/:room/*rest", forwardToActor(registry, { name: "chatRoom", key: (req) => [req.params.room] }));
  // @ts-expect-error: forwardToActor checks the name against the registry too
  forwardToActor(registry, { name: "chatroom", key: () => ["a"] });

  return [accessor, response, id, created];
};

describe("public types", () => {
  it("type-check (see the @ts-expect-error lines above)", () => {
    expect(typeof typeOnly).toBe("function");
  });
});
