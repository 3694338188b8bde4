import { setup } from "express-actors";
import { expressVersions } from "./helpers/servers";
import { connectActor, getOrCreate, startWsApp, within, type WsApp, type WsClient } from "./helpers/ws-harness";
import { messageData, probeActor, types, type ServerSide } from "./helpers/ws-probe";
import { delay, waitFor } from "./helpers/actor-harness";

// SPEC §7: the server-side WebSocket handed to onWebSocket, driven by real `ws` clients on 127.0.0.1.

describe.each(expressVersions)("server-side WebSocket on $label", ({ express }) => {
  const probe = probeActor();
  const registry = setup({ use: { probe: probe.definition } });
  let app: WsApp;
  let unique = 0;

  beforeAll(async () => {
    app = await startWsApp({ express, registry });
  });
  afterAll(async () => {
    await app.close();
    await registry.shutdown();
  });

  /** Opens a socket to a fresh actor whose onWebSocket runs `script`; resolves once both ends are up. */
  async function open(
    script?: (side: ServerSide) => unknown,
    opts: { path?: string; user?: string[] } = {},
  ): Promise<{ client: WsClient; side: ServerSide }> {
    const key = `k${++unique}`;
    if (script) probe.script(key, script);
    const next = probe.next();
    const client = connectActor(app, getOrCreate("probe", [key]), opts);
    const side = await within(next, "onWebSocket");
    await within(client.opened, "client open");
    return { client, side };
  }

  describe("readyState and constants", () => {
    it("is OPEN inside onWebSocket, CLOSING right after close(), CLOSED in the close event", async () => {
      let afterClose = -1;
      const { client, side } = await open();
      expect(side.readyStateInHandler).toBe(1);
      side.ws.close(1000);
      afterClose = side.ws.readyState;
      expect(afterClose).toBe(2);
      const event = await within(side.closed, "close event");
      expect(side.events.at(-1)).toMatchObject({ type: "close", readyState: 3 });
      expect(event.wasClean).toBe(true);
      expect(side.ws.readyState).toBe(3);
      expect(await client.closed).toEqual({ code: 1000, reason: "" });
    });

    it("exposes the four constants on the class and the instance, read-only", async () => {
      const { client, side } = await open();
      const ctor = side.ws.constructor as unknown as Record<string, number>;
      const values = { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 };
      for (const [name, value] of Object.entries(values)) {
        expect(ctor[name]).toBe(value);
        expect((side.ws as unknown as Record<string, number>)[name]).toBe(value);
        expect(() => {
          ctor[name] = 9;
        }).toThrow(TypeError);
        expect(() => Object.defineProperty(Object.getPrototypeOf(side.ws), name, { value: 9 })).toThrow(TypeError);
        expect((side.ws as unknown as Record<string, number>)[name]).toBe(value);
      }
      expect(() => {
        (side.ws as { readyState: number }).readyState = 5;
      }).toThrow(TypeError);
      expect(side.ws.readyState).toBe(1);
      client.ws.close();
    });
  });

  describe("url, protocol, extensions", () => {
    it("url is the request URL with the ws scheme; request.url is http and has no /.websocket", async () => {
      const { client, side } = await open(undefined, { path: "/room/a%20b?x=1&y=%2F" });
      expect(side.request.url).toBe(`${app.url}/room/a%20b?x=1&y=%2F`);
      expect(side.ws.url).toBe(`${app.wsUrl}/room/a%20b?x=1&y=%2F`);
      expect(side.request.url).not.toContain(".websocket");
      client.ws.close();
    });

    it("selects the first user protocol; the actor never sees query., conn_params. or encoding. entries", async () => {
      const { client, side } = await open(undefined, { user: ["chat.v2", "chat.v1"] });
      expect(side.ws.protocol).toBe("chat.v2");
      expect(client.ws.protocol).toBe("chat.v2");
      const header = side.request.headers.get("sec-websocket-protocol") ?? "";
      expect(header.split(/,\s*/)).toEqual(["chat.v2", "chat.v1", "rivetkit"]);
      expect(header).not.toMatch(/query\.|conn_params\.|encoding\./);
      for (const name of side.request.headers.keys()) expect(name).not.toMatch(/^x-rivetkit-/);
      client.ws.close();
    });

    it("selects rivetkit when no user protocol is offered; extensions is ''", async () => {
      const { client, side } = await open();
      expect(side.ws.protocol).toBe("rivetkit");
      expect(client.ws.protocol).toBe("rivetkit");
      expect(side.ws.extensions).toBe("");
      client.ws.close();
    });
  });

  describe("send", () => {
    it("sends strings, ArrayBuffers, typed-array windows, DataViews and Blobs, in order", async () => {
      const { client, side } = await open();
      const buf = new Uint8Array([0, 1, 2, 3, 4, 5, 6, 7]).buffer;
      side.ws.send("text");
      side.ws.send(buf);
      side.ws.send(new Uint8Array(buf, 2, 4));
      side.ws.send(new DataView(buf, 5, 2));
      side.ws.send(new Blob([new Uint8Array([9, 9, 9])]));
      side.ws.send("after blob");
      side.ws.send(null as unknown as string);
      side.ws.send(42 as unknown as string);
      side.ws.send("");
      side.ws.send("\uD807");
      const got = await client.received(10);
      expect(got.map((m) => (m.binary ? [...m.data] : m.text))).toEqual([
        "text",
        [0, 1, 2, 3, 4, 5, 6, 7],
        [2, 3, 4, 5],
        [5, 6],
        [9, 9, 9],
        "after blob",
        "null",
        "42",
        "",
        "\uFFFD",
      ]);
      expect(got.map((m) => m.binary)).toEqual([false, true, true, true, true, false, false, false, false, false]);
      client.ws.close();
    });

    it("sends the bytes as they were at send(), even when a Blob ahead delays the write", async () => {
      const { client, side } = await open();
      const view = new Uint8Array([1, 2, 3]);
      const buffer = new Uint8Array([4, 5]).buffer;
      side.ws.send(new Blob(["b"]));
      side.ws.send(view);
      side.ws.send(buffer);
      view[0] = 99;
      new Uint8Array(buffer)[0] = 99;
      const got = await client.received(3);
      expect(got.map((m) => [...m.data])).toEqual([[98], [1, 2, 3], [4, 5]]);
      client.ws.close();
    });

    it("delivers a Blob sent just before close() ahead of the close frame", async () => {
      const { client, side } = await open();
      side.ws.send(new Blob(["last words"]));
      side.ws.send("and these");
      side.ws.close(1000, "done");
      expect(side.ws.readyState).toBe(2);
      expect(await within(client.closed, "client close")).toEqual({ code: 1000, reason: "done" });
      expect(client.messages.map((m) => m.data.toString())).toEqual(["last words", "and these"]);
    });

    it("after close(): no throw, nothing sent, bufferedAmount still grows", async () => {
      const { client, side } = await open();
      side.ws.close();
      const before = side.ws.bufferedAmount;
      expect(side.ws.send("12345")).toBeUndefined();
      expect(side.ws.bufferedAmount).toBe(before + 5);
      side.ws.send(new Uint8Array(3));
      expect(side.ws.bufferedAmount).toBe(before + 8);
      expect(await client.closed).toEqual({ code: 1005, reason: "" });
      await side.closed;
      side.ws.send("x");
      expect(side.ws.bufferedAmount).toBe(before + 9);
      expect(client.messages).toEqual([]);
    });
  });

  describe("bufferedAmount", () => {
    it("grows by the UTF-8 byte length in the same turn and goes back to 0 once written", async () => {
      const { client, side } = await open();
      expect(side.ws.bufferedAmount).toBe(0);
      side.ws.send("¥¥¥¥¥¥");
      expect(side.ws.bufferedAmount).toBe(12);
      side.ws.send(new Uint8Array(10));
      expect(side.ws.bufferedAmount).toBe(22);
      await waitFor(() => side.ws.bufferedAmount === 0, "bufferedAmount back to 0");
      await client.received(2);
      client.ws.close();
    });

    it("reports backpressure: grows while the client does not read, drains when it does", async () => {
      const { client, side } = await open();
      client.ws.pause();
      const chunk = new Uint8Array(64 * 1024);
      const count = 512;
      for (let i = 0; i < count; i++) side.ws.send(chunk);
      expect(side.ws.bufferedAmount).toBe(count * chunk.byteLength);
      await delay(100);
      // The kernel holds a few MiB at most; the rest must still be counted as buffered.
      const stalled = side.ws.bufferedAmount;
      expect(stalled).toBeGreaterThan(0);
      await delay(100);
      expect(side.ws.bufferedAmount).toBe(stalled);
      client.ws.resume();
      await waitFor(() => side.ws.bufferedAmount === 0, "bufferedAmount drained", 10_000);
      await client.received(count, 10_000);
      client.ws.close();
    });
  });

  describe("binaryType and incoming messages", () => {
    it("defaults to arraybuffer with exact bytes, switches to blob at dispatch time, ignores invalid values", async () => {
      const { client, side } = await open((s) => {
        s.ws.addEventListener("message", (e) => {
          if ((e as MessageEvent).data === "blob") s.ws.binaryType = "blob";
        });
      });
      expect(side.ws.binaryType).toBe("arraybuffer");
      side.ws.binaryType = "nodebuffer" as BinaryType;
      expect(side.ws.binaryType).toBe("arraybuffer");
      client.send(Buffer.from([1, 2, 3]));
      client.send("text ✓");
      client.send("blob");
      client.send(Buffer.from([4, 5]));
      await waitFor(() => messageData(side).length === 4, "four messages");
      const [first, text, , blob] = messageData(side);
      expect(first).toBeInstanceOf(ArrayBuffer);
      expect([...new Uint8Array(first as ArrayBuffer)]).toEqual([1, 2, 3]);
      expect(text).toBe("text ✓");
      expect(blob).toBeInstanceOf(Blob);
      expect([...new Uint8Array(await (blob as Blob).arrayBuffer())]).toEqual([4, 5]);
      client.ws.close();
    });

    it("delivers MessageEvents with the socket's origin", async () => {
      const { client, side } = await open();
      client.send("hello");
      await waitFor(() => messageData(side).length === 1, "a message");
      const event = side.events.find((e) => e.type === "message")!.event as MessageEvent;
      expect(event).toBeInstanceOf(MessageEvent);
      expect(event.origin).toBe(app.wsUrl);
      client.ws.close();
    });

    it("does not dispatch messages that arrive after close()", async () => {
      const { client, side } = await open((s) => {
        s.ws.addEventListener("message", () => s.ws.close(1000));
      });
      client.send("one");
      client.send("two");
      client.send("three");
      await within(side.closed, "close");
      expect(messageData(side)).toEqual(["one"]);
    });
  });

  describe("close()", () => {
    it.each([0, 500, NaN, "s", null, 65536 + 1000, 2999, 1005, 1006, 1015, 5000, -1])(
      "close(%p) throws InvalidAccessError and leaves the socket open",
      async (code) => {
        const { client, side } = await open();
        let error: unknown;
        try {
          side.ws.close(code as number, "r");
        } catch (err) {
          error = err;
        }
        expect(error).toBeInstanceOf(DOMException);
        expect((error as DOMException).name).toBe("InvalidAccessError");
        expect(side.ws.readyState).toBe(1);
        client.ws.close();
      },
    );

    it("throws InvalidAccessError for a reason without a code given as the first argument", async () => {
      const { client, side } = await open();
      expect(() => side.ws.close("only reason" as unknown as number)).toThrow(
        expect.objectContaining({ name: "InvalidAccessError" }),
      );
      client.ws.close();
    });

    it.each([1000, 3000, 4999, 1001, 1008, 1011])("close(%p) is allowed and reaches the client", async (code) => {
      const { client, side } = await open();
      side.ws.close(code, "why");
      expect(await client.closed).toEqual({ code, reason: "why" });
      const event = await side.closed;
      expect(event.wasClean).toBe(true);
    });

    it("throws SyntaxError for a reason over 123 UTF-8 bytes; 123 bytes are fine", async () => {
      const { client, side } = await open();
      expect(() => side.ws.close(1000, "x".repeat(124))).toThrow(expect.objectContaining({ name: "SyntaxError" }));
      expect(() => side.ws.close(1000, "é".repeat(62))).toThrow(expect.objectContaining({ name: "SyntaxError" }));
      expect(side.ws.readyState).toBe(1);
      side.ws.close(1000, "x".repeat(123));
      expect((await client.closed).reason).toBe("x".repeat(123));
    });

    it("converts a lone surrogate in the reason to U+FFFD", async () => {
      const { client, side } = await open();
      side.ws.close(1000, "\uD807");
      expect(await client.closed).toEqual({ code: 1000, reason: "\uFFFD" });
    });

    it("close(undefined, 'bye') sends 1000 'bye'; close() sends no code (1005)", async () => {
      const a = await open();
      a.side.ws.close(undefined, "bye");
      expect(await a.client.closed).toEqual({ code: 1000, reason: "bye" });
      const b = await open();
      b.side.ws.close();
      expect(await b.client.closed).toEqual({ code: 1005, reason: "" });
      expect((await b.side.closed).code).toBe(1005);
    });

    it("closing three times, or again inside onclose, fires one close event", async () => {
      const { client, side } = await open();
      let inside = 0;
      side.ws.onclose = () => {
        side.ws.close();
        inside = side.ws.readyState;
      };
      side.ws.close(1000);
      side.ws.close(3000);
      side.ws.close();
      await client.closed;
      await side.closed;
      await delay(50);
      expect(types(side).filter((t) => t === "close")).toHaveLength(1);
      expect(inside).toBe(3);
    });

    it("reports a client's close code and reason, clean", async () => {
      const { client, side } = await open();
      client.ws.close(4001, "bye");
      const event = await within(side.closed, "server close");
      expect(event.code).toBe(4001);
      expect(event.reason).toBe("bye");
      expect(event.wasClean).toBe(true);
      expect(side.ws.readyState).toBe(3);
    });

    it("fires error then close 1006 (not clean) when the client vanishes without a close frame", async () => {
      const { client, side } = await open();
      (client.ws as unknown as { _socket: { destroy(): void } })._socket.destroy();
      const event = await within(side.closed, "server close");
      expect(types(side)).toEqual(["open", "error", "close"]);
      expect(side.events[1].event).toBeInstanceOf(Event);
      expect(event.code).toBe(1006);
      expect(event.wasClean).toBe(false);
    });
  });

  describe("events", () => {
    it("dispatches real Event, MessageEvent and CloseEvent with this/target/currentTarget = the socket", async () => {
      const seen: Array<Record<string, unknown>> = [];
      const { client, side } = await open((s) => {
        for (const type of ["open", "message", "close"]) {
          s.ws.addEventListener(type, function (this: unknown, e) {
            seen.push({
              type,
              thisIs: this === s.ws,
              target: e.target === s.ws,
              current: e.currentTarget === s.ws,
              phase: e.eventPhase,
              bubbles: e.bubbles,
              cancelable: e.cancelable,
              isEvent: e instanceof Event,
              tag: Object.prototype.toString.call(e),
            });
          });
        }
      });
      client.send("m");
      await waitFor(() => seen.length === 2, "open and message");
      client.ws.close(3001, "r");
      const close = await side.closed;
      expect(close.code).toBe(3001);
      expect(close.reason).toBe("r");
      expect(close.wasClean).toBe(true);
      const common = { thisIs: true, target: true, current: true, phase: 2, bubbles: false, cancelable: false, isEvent: true };
      expect(seen).toEqual([
        { type: "open", ...common, tag: "[object Event]" },
        { type: "message", ...common, tag: expect.stringMatching(/^\[object (MessageEvent|Event)\]$/) },
        { type: "close", ...common, tag: "[object CloseEvent]" },
      ]);
      expect(side.events.find((e) => e.type === "message")!.event).toBeInstanceOf(MessageEvent);
    });

    it("keeps listener order a, onmessage, c, and onmessage keeps its slot when reassigned", async () => {
      const order: string[] = [];
      const { client } = await open((s) => {
        s.ws.addEventListener("message", () => order.push("a"));
        s.ws.onmessage = () => order.push("b");
        s.ws.addEventListener("message", () => order.push("c"));
        s.ws.onmessage = () => order.push("b2");
      });
      client.send("x");
      await waitFor(() => order.length === 3, "three listeners");
      expect(order).toEqual(["a", "b2", "c"]);
      client.ws.close();
    });

    it("treats non-callable on* values as null", async () => {
      const { client, side } = await open();
      for (const name of ["onopen", "onmessage", "onerror", "onclose"] as const) {
        expect(side.ws[name]).toBeNull();
        (side.ws as unknown as Record<string, unknown>)[name] = 2;
        expect(side.ws[name]).toBeNull();
        (side.ws as unknown as Record<string, unknown>)[name] = { handleEvent() {} };
        expect(side.ws[name]).toBeNull();
        const fn = () => {};
        (side.ws as unknown as Record<string, unknown>)[name] = fn;
        expect(side.ws[name]).toBe(fn);
        (side.ws as unknown as Record<string, unknown>)[name] = null;
        expect(side.ws[name]).toBeNull();
      }
      client.ws.close();
    });

    it("calls onX with this = the socket and stops after it is set to null", async () => {
      const calls: unknown[] = [];
      const { client, side } = await open((s) => {
        s.ws.onmessage = function (this: unknown, e) {
          calls.push([this === s.ws, e.data]);
          if (e.data === "1") s.ws.onmessage = null;
        };
      });
      client.send("1");
      client.send("2");
      await waitFor(() => messageData(side).length === 2, "two messages");
      expect(calls).toEqual([[true, "1"]]);
      client.ws.close();
    });

    it("supports once, signal, handleEvent objects, removeEventListener and dispatchEvent", async () => {
      const calls: string[] = [];
      const controller = new AbortController();
      const removed = () => calls.push("removed");
      const handler = {
        handleEvent(this: unknown, e: Event) {
          calls.push(`handleEvent:${this === handler}:${(e as MessageEvent).data}`);
        },
      };
      const { client, side } = await open((s) => {
        s.ws.addEventListener("message", (e) => calls.push(`once:${e.data}`), { once: true });
        s.ws.addEventListener("message", (e) => calls.push(`signal:${e.data}`), { signal: controller.signal });
        s.ws.addEventListener("message", handler);
        s.ws.addEventListener("message", removed);
        s.ws.removeEventListener("message", removed);
        for (const type of ["open", "error", "close"]) {
          s.ws.addEventListener(type, removed);
          s.ws.removeEventListener(type, removed);
        }
      });
      client.send("1");
      await waitFor(() => messageData(side).length === 1, "first message");
      controller.abort();
      client.send("2");
      await waitFor(() => messageData(side).length === 2, "second message");
      side.ws.dispatchEvent(new MessageEvent("message", { data: "synthetic" }));
      side.ws.dispatchEvent(new Event("open"));
      expect(calls).toEqual([
        "once:1",
        "signal:1",
        "handleEvent:true:1",
        "handleEvent:true:2",
        "handleEvent:true:synthetic",
      ]);
      expect(types(side).filter((t) => t === "open")).toHaveLength(2);
      client.ws.close();
      await side.closed;
      expect(calls).not.toContain("removed");
    });

    it("adds the same listener once per type, as the DOM does", async () => {
      let count = 0;
      const listener = () => count++;
      const { client, side } = await open((s) => {
        s.ws.addEventListener("message", listener);
        s.ws.addEventListener("message", listener);
        s.ws.addEventListener("message", listener, { once: true });
      });
      client.send("x");
      await waitFor(() => messageData(side).length === 1, "a message");
      expect(count).toBe(1);
      client.ws.close();
    });
  });

  describe("open and held messages", () => {
    it("dispatches open after onWebSocket returns; listeners added there see it and every early message", async () => {
      const order: string[] = [];
      const { client, side } = await open((s) => {
        s.ws.send("hello from setup");
        s.ws.addEventListener("open", () => order.push("open"));
        s.ws.addEventListener("message", (e) => order.push(`message:${e.data}`));
      });
      client.send("m1");
      client.send("m2");
      await waitFor(() => order.length === 3, "open and two messages");
      expect(order).toEqual(["open", "message:m1", "message:m2"]);
      expect(types(side).filter((t) => t === "open")).toHaveLength(1);
      expect((await client.received(1))[0].text).toBe("hello from setup");
      client.ws.close();
    });

    it("an async onWebSocket that awaits before adding listeners still gets every message sent right after open", async () => {
      const got: string[] = [];
      const key = `k${++unique}`;
      probe.script(key, async (s) => {
        await delay(150);
        s.ws.addEventListener("message", (e) => got.push(e.data as string));
      });
      const client = connectActor(app, getOrCreate("probe", [key]));
      client.ws.once("open", () => {
        for (let i = 0; i < 20; i++) client.send(`m${i}`);
      });
      await waitFor(() => got.length === 20, "all twenty messages");
      expect(got).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
      client.ws.close();
    });
  });
});
