import { actor, fileStore, setup } from "express-actors";
import { createClient } from "express-actors/client";
import { tempDir, waitFor } from "./helpers/actor-harness";
import { expressVersions } from "./helpers/servers";
import { startWsApp } from "./helpers/ws-harness";

// A chat room as a user would write it: broadcast to every socket, history in state, persisted
// with fileStore across reconnects and across a fresh registry on the same directory.

interface Line {
  from: string;
  text: string;
}

const chat = actor({
  state: { history: [] as Line[] },
  createVars: () => ({ sockets: new Set<WebSocket>() }),
  onAuth: (_args, params) => ({ name: (params as { name?: string } | undefined)?.name ?? "anon" }),
  onWebSocket: (c, ws, { auth }) => {
    // The server-side client skips onAuth, so auth is undefined there.
    const name = (auth as { name: string } | undefined)?.name ?? "server";
    c.vars.sockets.add(ws);
    ws.send(JSON.stringify({ type: "history", history: c.state.history }));
    ws.addEventListener("message", (e) => {
      const line = { from: name, text: String(e.data) };
      c.state.history.push(line);
      for (const peer of c.vars.sockets) peer.send(JSON.stringify({ type: "line", ...line }));
    });
    ws.addEventListener("close", () => c.vars.sockets.delete(ws));
  },
});

/** A chat participant over createClient: everything it received, parsed. */
async function join(base: string, room: string, name: string) {
  const client = createClient<ReturnType<typeof makeRegistry>>(`${base}/registry`);
  const ws = await client.chat.getOrCreate([room], { params: { name } }).websocket();
  const received: Array<{ type: string; history?: Line[]; from?: string; text?: string }> = [];
  ws.addEventListener("message", (e) => received.push(JSON.parse(e.data as string)));
  const opened = new Promise<void>((resolve) => ws.addEventListener("open", () => resolve()));
  const closed = new Promise<void>((resolve) => ws.addEventListener("close", () => resolve()));
  await opened;
  await waitFor(() => received.length > 0, `${name}'s history`);
  return {
    ws,
    received,
    lines: () => received.filter((m) => m.type === "line").map((m) => `${m.from}: ${m.text}`),
    history: () => received[0].history!.map((l) => `${l.from}: ${l.text}`),
    leave: async () => {
      ws.close();
      await closed;
    },
  };
}

const makeRegistry = (dir: string) => setup({ use: { chat }, store: fileStore({ dir }) });

describe.each(expressVersions)("chat room on $label", ({ express }) => {
  let dir: { dir: string; cleanup(): Promise<void> };
  beforeAll(async () => {
    dir = await tempDir("express-actors-chat-");
  });
  afterAll(() => dir.cleanup());

  it("broadcasts to everyone in order and keeps the history across reconnects and restarts", async () => {
    let registry = makeRegistry(dir.dir);
    let app = await startWsApp({ express, registry });
    try {
      const ann = await join(app.url, "lobby", "ann");
      const bob = await join(app.url, "lobby", "bob");
      const cat = await join(app.url, "lobby", "cat");
      expect(ann.history()).toEqual([]);
      ann.ws.send("hello");
      bob.ws.send("hi ann");
      cat.ws.send("hey all");
      const expected = ["ann: hello", "bob: hi ann", "cat: hey all"];
      for (const who of [ann, bob, cat]) await waitFor(() => who.lines().length === 3, "three lines each");
      // One actor, one turn per message: every participant sees the same order.
      expect(bob.lines()).toEqual(ann.lines());
      expect(cat.lines()).toEqual(ann.lines());
      expect([...ann.lines()].sort()).toEqual([...expected].sort());
      const order = ann.lines();

      await bob.leave();
      ann.ws.send("bob left");
      await waitFor(() => cat.lines().length === 4, "cat sees the fourth line");
      expect(bob.lines()).toHaveLength(3);
      await Promise.all([ann.leave(), cat.leave()]);

      const back = await join(app.url, "lobby", "bob");
      expect(back.history()).toEqual([...order, "ann: bob left"]);
      await back.leave();
    } finally {
      await app.close();
      await registry.shutdown();
    }

    registry = makeRegistry(dir.dir);
    app = await startWsApp({ express, registry });
    try {
      const dan = await join(app.url, "lobby", "dan");
      expect(dan.history()).toHaveLength(4);
      expect(dan.history().at(-1)).toBe("ann: bob left");
      dan.ws.send("after the restart");
      await waitFor(() => dan.lines().length === 1, "dan's own line");
      await dan.leave();
      const other = await join(app.url, "elsewhere", "eve");
      expect(other.history()).toEqual([]);
      await other.leave();
    } finally {
      await app.close();
      await registry.shutdown();
    }

    registry = makeRegistry(dir.dir);
    try {
      const ws = await registry.createServerClient().chat.get(["lobby"]).websocket();
      const first = await new Promise<string>((resolve) => ws.addEventListener("message", (e) => resolve(e.data as string)));
      expect(JSON.parse(first).history.at(-1)).toEqual({ from: "dan", text: "after the restart" });
      ws.close();
    } finally {
      await registry.shutdown();
    }
  });
});
