import express from "express";
import { actor, setup } from "express-actors";
import { coreOf } from "../lib/registry/setup";
import { TestStore, waitFor } from "./helpers/actor-harness";
import { connectActor, getOrCreate, startWsApp, within, type WsApp } from "./helpers/ws-harness";

// SPEC §6 for onWebSocket: when state is saved, and how an open socket keeps its actor awake.

const store = new TestStore();
const stops: string[] = [];

const counter = actor({
  state: { setup: 0, messages: [] as string[], closes: 0 },
  onAuth: () => null,
  onStop: (c) => {
    stops.push(c.key[0]);
  },
  onWebSocket: async (c, ws, { request }) => {
    const mode = new URL(request.url).pathname;
    c.state.setup++;
    ws.addEventListener("open", async () => {
      // Dispatched after setup's save: the store already has the setup change.
      const stored = (await store.stored(c.actorId)) as { setup: number };
      ws.send(`stored setup=${stored.setup}`);
    });
    ws.addEventListener("message", async (e) => {
      if (e.data === "fake close") ws.dispatchEvent(new Event("close"));
      c.state.messages.push(e.data as string);
      if (mode === "/durable") {
        await c.saveState();
        const stored = (await store.stored(c.actorId)) as { messages: string[] };
        ws.send(`durable ${stored.messages.length}`);
      }
    });
    ws.addEventListener("close", () => {
      c.state.closes++;
    });
  },
  options: { stateSaveInterval: 100, sleepTimeout: 150 },
});

/** Never saved on a timer within a test's lifetime: only the close (or setup) can save it. */
const slowSaver = actor({
  state: { closes: 0 },
  onAuth: () => null,
  onWebSocket: (c, ws) => {
    ws.addEventListener("close", () => {
      c.state.closes++;
    });
  },
  options: { stateSaveInterval: 60_000 },
});

const registry = setup({ use: { counter, slowSaver }, store });
const core = coreOf(registry);
let app: WsApp;

beforeAll(async () => {
  app = await startWsApp({ express, registry });
});
afterAll(async () => {
  await app.close();
  await registry.shutdown();
});

const savesOf = (actorId: string) => store.saves.filter((s) => s.actorId === actorId).map((s) => JSON.parse(s.state));

async function resolveId(name: string, key: string[]) {
  return registry.createServerClient()[name as "counter"].get(key).resolve();
}

it("saves the setup's changes before `open` is dispatched", async () => {
  const client = connectActor(app, getOrCreate("counter", ["setup"]));
  expect((await client.received(1))[0].text).toBe("stored setup=1");
  client.ws.close();
  await client.closed;
});

it("c.saveState() resolves once the state is durable", async () => {
  const client = connectActor(app, getOrCreate("counter", ["durable"]), { path: "/durable" });
  await client.opened;
  client.send("a");
  client.send("b");
  const replies = await client.received(3);
  expect(replies.slice(1).map((m) => m.text)).toEqual(["durable 1", "durable 2"]);
  client.ws.close();
  await client.closed;
});

it("saves a change made in a listener within stateSaveInterval, without any call", async () => {
  const client = connectActor(app, getOrCreate("counter", ["timer"]));
  await client.received(1);
  const id = await resolveId("counter", ["timer"]);
  client.send("kept");
  await waitFor(() => savesOf(id).some((s) => s.messages.includes("kept")), "the throttled save", 2000);
  expect(client.ws.readyState).toBe(1);
  client.ws.close();
  await client.closed;
});

it("saves when each socket closes", async () => {
  const a = connectActor(app, getOrCreate("slowSaver", ["closing"]));
  const b = connectActor(app, getOrCreate("slowSaver", ["closing"]));
  await Promise.all([a.opened, b.opened]);
  const id = await resolveId("slowSaver", ["closing"]);
  a.ws.close();
  await waitFor(async () => ((await store.stored(id)) as { closes: number }).closes === 1, "saved after the first close");
  b.ws.close();
  await waitFor(async () => ((await store.stored(id)) as { closes: number }).closes === 2, "saved after the second close");
});

it("never sleeps while a socket is open (a synthetic close event changes nothing), and sleeps after it closes", async () => {
  const client = connectActor(app, getOrCreate("counter", ["awake"]));
  await client.received(1);
  client.send("fake close");
  // Three sleep timeouts with the socket open.
  await new Promise((resolve) => setTimeout(resolve, 450));
  expect(stops).not.toContain("awake");
  client.ws.close();
  await client.closed;
  await waitFor(() => stops.includes("awake"), "sleep after close", 3000);
  // It wakes from the store with what its listeners saved.
  const again = connectActor(app, getOrCreate("counter", ["awake"]));
  expect((await again.received(1))[0].text).toBe("stored setup=2");
  again.ws.close();
  await again.closed;
});

it("opens and closes 1,000 sockets without leaking listeners, closers or busy state", async () => {
  const key = ["many"];
  const warm = connectActor(app, getOrCreate("slowSaver", key));
  await warm.opened;
  warm.ws.close();
  await warm.closed;
  await waitFor(() => core.closers.size === 0, "warm-up socket released");

  const processListeners = () => process.eventNames().map((n) => `${String(n)}:${process.listenerCount(n)}`).sort();
  const serverListeners = () => app.server.eventNames().map((n) => `${String(n)}:${app.server.listenerCount(n)}`).sort();
  const before = { process: processListeners(), server: serverListeners() };

  const batch = 50;
  for (let i = 0; i < 1000; i += batch) {
    const clients = Array.from({ length: batch }, () => connectActor(app, getOrCreate("slowSaver", key)));
    await within(Promise.all(clients.map((c) => c.opened)), "a batch to open", 10_000);
    for (const c of clients) c.ws.close();
    await within(Promise.all(clients.map((c) => c.closed)), "a batch to close", 10_000);
  }

  await waitFor(() => core.closers.size === 0, "every socket released", 5000);
  await waitFor(() => app.expressWs!.getWss().clients.size === 0, "express-ws forgot its clients", 5000);
  const id = await resolveId("slowSaver", key);
  const instance = (core as unknown as { instances: Map<string, { busy: boolean }> }).instances.get(id)!;
  await waitFor(() => !instance.busy, "the actor idle again");
  await waitFor(async () => ((await store.stored(id)) as { closes: number }).closes === 1001, "every close saved", 5000);
  expect({ process: processListeners(), server: serverListeners() }).toEqual(before);
}, 20_000);
