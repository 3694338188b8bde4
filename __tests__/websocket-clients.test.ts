import express from "express";
import { actor, setup, Unauthorized, UserError } from "express-actors";
import { createClient } from "express-actors/client";
import { captureErrorLog, waitFor } from "./helpers/actor-harness";
import { startWsApp, within, type WsApp } from "./helpers/ws-harness";

// SPEC §3: `.websocket()` on createClient (the platform's WebSocket, `ws` on Node 20) and on
// registry.createServerClient() (in process): same semantics, refusals by close code.

interface Seen {
  url: string;
  wsUrl: string;
  protocol: string;
  auth: unknown;
  key: string[];
}

let authCalls = 0;
const seen: Seen[] = [];

const room = actor({
  state: { messages: [] as string[] },
  onAuth: (_args, params) => {
    authCalls++;
    const mode = (params as { mode?: string } | undefined)?.mode;
    if (mode === "unauthorized") throw new Unauthorized();
    if (mode === "user") throw new UserError("no", { code: "no_entry" });
    return { params: params ?? null };
  },
  onWebSocket: (c, ws, { request, auth }) => {
    seen.push({ url: request.url, wsUrl: ws.url, protocol: ws.protocol, auth, key: c.key });
    const path = new URL(request.url).pathname;
    if (path === "/throw") throw new Error("secret");
    if (path === "/user-error") throw new UserError("full", { code: "room_full" });
    if (path === "/history") ws.send(JSON.stringify(c.state.messages));
    // Sent during setup: a client that adds listeners after `await websocket()` must still get it.
    ws.send("welcome");
    ws.send(new Uint8Array([1, 2, 3]));
    ws.addEventListener("message", (e) => {
      const data = e.data instanceof ArrayBuffer ? `bytes:${new Uint8Array(e.data).join(",")}` : String(e.data);
      c.state.messages.push(data);
      ws.send(`echo:${data}`);
    });
    ws.addEventListener("close", (e) => c.state.messages.push(`closed:${(e as CloseEvent).code}:${(e as CloseEvent).reason}`));
  },
});
const httpOnly = actor({ state: {}, onAuth: () => null, onFetch: () => new Response("ok") });

interface Recorder {
  events: string[];
  data: unknown[];
  closed: Promise<CloseEvent>;
}

/** Adds listeners the way a browser user would, right after `await websocket()`. */
function record(ws: WebSocket): Recorder {
  const events: string[] = [];
  const data: unknown[] = [];
  const closed = new Promise<CloseEvent>((resolve) => {
    ws.addEventListener("close", (e) => {
      events.push("close");
      resolve(e as CloseEvent);
    });
  });
  ws.addEventListener("open", () => events.push("open"));
  ws.addEventListener("error", () => events.push("error"));
  ws.addEventListener("message", (e) => {
    events.push("message");
    data.push(e.data);
  });
  return { events, data, closed };
}

const blobBytes = async (value: unknown) => [...new Uint8Array(await (value as Blob).arrayBuffer())];

let unique = 0;
const key = () => [`c${++unique}`];

describe.each([
  { label: "createClient", remote: true },
  { label: "createServerClient", remote: false },
])("$label .websocket()", ({ remote }) => {
  const registry = setup({ use: { room, httpOnly } });
  let app: WsApp | undefined;
  let client: ReturnType<typeof registry.createServerClient>;

  beforeAll(async () => {
    if (remote) {
      app = await startWsApp({ express, registry });
      client = createClient<typeof registry>(`${app.url}/registry`);
    } else {
      client = registry.createServerClient();
    }
  });
  afterAll(async () => {
    await app?.close();
    await registry.shutdown();
  });

  it("resolves CONNECTING; listeners added after await see open and every message; binaryType is blob", async () => {
    const ws = await client.room.getOrCreate(key(), { params: { user: "ann" } }).websocket("/chat?x=1", ["v1", "v0"]);
    expect(ws.readyState).toBe(0);
    expect(ws.binaryType).toBe("blob");
    const rec = record(ws);
    await waitFor(() => rec.data.length === 2, "welcome and bytes");
    expect(rec.events).toEqual(["open", "message", "message"]);
    expect(rec.data[0]).toBe("welcome");
    expect(rec.data[1]).toBeInstanceOf(Blob);
    expect(await blobBytes(rec.data[1])).toEqual([1, 2, 3]);
    expect(ws.readyState).toBe(1);
    expect(ws.protocol).toBe("v1");

    ws.send("hi");
    ws.send(new Uint8Array([7, 8]).buffer);
    await waitFor(() => rec.data.length === 4, "two echoes");
    expect(rec.data.slice(2)).toEqual(["echo:hi", "echo:bytes:7,8"]);

    const last = seen.at(-1)!;
    expect(last.protocol).toBe("v1");
    if (remote) {
      expect(last.url).toBe(`${app!.url}/chat?x=1`);
      expect(last.wsUrl).toBe(`${app!.wsUrl}/chat?x=1`);
      expect(last.auth).toEqual({ params: { user: "ann" } });
    } else {
      expect(last.url).toBe("http://actor/chat?x=1");
      expect(last.wsUrl).toBe("ws://actor/chat?x=1");
      expect(last.auth).toBeUndefined();
    }
    ws.close(4000, "bye");
    const event = await within(rec.closed, "close");
    expect(event.code).toBe(4000);
    expect(event.reason).toBe("bye");
    expect(event.wasClean).toBe(true);
  });

  it("reaches the same actor again, with the state its listeners saved, through get and getForId", async () => {
    const k = key();
    const first = await client.room.getOrCreate(k).websocket();
    const rec = record(first);
    await waitFor(() => rec.events.includes("open"), "open");
    first.send("remember me");
    await waitFor(() => rec.data.includes("echo:remember me"), "echo");
    first.close();
    await rec.closed;
    const id = await client.room.get(k).resolve();
    const again = await client.room.getForId(id).websocket("/history");
    const rec2 = record(again);
    await waitFor(() => rec2.data.length > 0, "the history");
    expect(JSON.parse(rec2.data[0] as string)).toEqual(["remember me", "closed:1005:"]);
    again.send("again");
    await waitFor(() => rec2.data.includes("echo:again"), "echo again");
    again.close();
    await rec2.closed;
  });

  it("reports refusals by close code with reason = the error code, after open", async () => {
    const log = captureErrorLog();
    try {
      const cases: Array<[() => Promise<WebSocket>, number, string]> = [
        [() => client.room.get(key()).websocket(), 4404, "actor_not_found"],
        [() => (client as any).nope.getOrCreate(key()).websocket(), 4404, "actor_not_found"],
        [() => client.httpOnly.getOrCreate(key()).websocket(), 4404, "websocket_not_defined"],
        [() => client.room.getOrCreate(key()).websocket("/throw"), 1011, "internal_error"],
        [() => client.room.getOrCreate(key()).websocket("/user-error"), 4400, "room_full"],
        [() => client.room.getForId("no-such-id").websocket(), 4404, "actor_not_found"],
      ];
      for (const [open, code, reason] of cases) {
        const rec = record(await open());
        const event = await within(rec.closed, `close ${code}`);
        expect({ code: event.code, reason: event.reason }).toEqual({ code, reason });
        expect(rec.events[0]).toBe("open");
      }
    } finally {
      log.restore();
    }
  });

  if (remote) {
    it("runs onAuth: conn params travel to it, and its refusals close the socket", async () => {
      const before = authCalls;
      const unauthorized = record(await client.room.getOrCreate(key(), { params: { mode: "unauthorized" } }).websocket());
      expect((await unauthorized.closed).code).toBe(4401);
      const user = record(await client.room.getOrCreate(key(), { params: { mode: "user" } }).websocket());
      const event = await user.closed;
      expect([event.code, event.reason]).toEqual([4400, "no_entry"]);
      expect(authCalls).toBe(before + 2);
    });
  } else {
    it("never runs onAuth, and throws InvalidStateError on send() while CONNECTING", async () => {
      const before = authCalls;
      const ws = await client.room.getOrCreate(key(), { params: { mode: "unauthorized" } }).websocket();
      expect(() => ws.send("too early")).toThrow(expect.objectContaining({ name: "InvalidStateError" }));
      const rec = record(ws);
      await waitFor(() => rec.events.includes("open"), "open");
      expect(authCalls).toBe(before);
      ws.close();
      await rec.closed;
    });

    it("closes its sockets with 1001 shutting_down on registry.shutdown()", async () => {
      const reg = setup({ use: { room } });
      const ws = await reg.createServerClient().room.getOrCreate(["s"]).websocket();
      const rec = record(ws);
      await waitFor(() => rec.events.includes("open"), "open");
      await reg.shutdown();
      const event = await within(rec.closed, "close");
      expect([event.code, event.reason]).toEqual([1001, "shutting_down"]);
    });
  }
});
