import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import { createInterface } from "node:readline";
import { actor, fileStore, setup } from "express-actors";
import { counter } from "./fixtures/counter-actor";
import { listen } from "./helpers/servers";
import {
  RAW,
  TestStore,
  actorQuery,
  captureErrorLog,
  deferred,
  delay,
  mountRegistry,
  tempDir,
  waitFor,
} from "./helpers/actor-harness";

describe("saving before the response", () => {
  const store = new TestStore();
  const registry = setup({ use: { counter }, store });
  const client = registry.createServerClient();
  let server: Awaited<ReturnType<typeof listen>>;
  beforeAll(async () => (server = await listen(mountRegistry(registry))));
  afterAll(async () => {
    await server.close();
    await registry.shutdown();
  });

  /** Starts `send` with saves held; checks nothing arrives until the save is released. */
  async function expectResponseAfterSave(send: () => Promise<Response>, id: () => Promise<string>) {
    const held = store.hold();
    let answered = false;
    const pending = send().then((res) => {
      answered = true;
      return res;
    });
    await held.started;
    await delay(100);
    expect(answered).toBe(false);
    held.release();
    const res = await pending;
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ count: 1 });
    expect(await store.stored(await id())).toEqual({ count: 1 });
  }

  it("holds the HTTP response until the store has the change", async () => {
    const query = actorQuery("counter", ["http"]);
    await expectResponseAfterSave(
      () => fetch(`${server.url}${RAW}/`, { method: "POST", headers: { "X-RivetKit-Actor-Query": query } }),
      () => client.counter.get(["http"]).resolve(),
    );
  });

  it("holds the server client's response until the store has the change", async () => {
    await expectResponseAfterSave(
      () => client.counter.getOrCreate(["srv"]).fetch("/", { method: "POST" }),
      () => client.counter.get(["srv"]).resolve(),
    );
  });
});

describe("changes made outside a request", () => {
  const store = new TestStore();
  const release = deferred();
  const ticker = actor({
    state: { ticks: 0 },
    onAuth: () => null,
    onFetch: async (c, req) => {
      const path = new URL(req.url).pathname;
      if (path === "/tick-later") setTimeout(() => c.state.ticks++, 10);
      if (path === "/wait") await release.promise;
      return Response.json(c.state);
    },
    options: { stateSaveInterval: 50, sleepTimeout: 60_000 },
  });
  const registry = setup({ use: { ticker }, store });
  const client = registry.createServerClient();
  afterAll(() => registry.shutdown());

  it("are saved within stateSaveInterval", async () => {
    const handle = client.ticker.getOrCreate(["t"]);
    const id = await handle.resolve();
    expect(await (await handle.fetch("/tick-later")).json()).toEqual({ ticks: 0 });
    expect(await store.stored(id)).toEqual({ ticks: 0 });
    await waitFor(async () => ((await store.stored(id)) as { ticks: number }).ticks === 1, "the timer's change to be saved", 2000);
  });

  it("are saved within stateSaveInterval even while another request is in flight", async () => {
    const handle = client.ticker.getOrCreate(["busy"]);
    const id = await handle.resolve();
    await (await handle.fetch("/tick-later")).text();
    await waitFor(async () => ((await store.stored(id)) as { ticks: number }).ticks === 1, "the first tick to be saved", 2000);
    const waiting = handle.fetch("/wait");
    await (await handle.fetch("/tick-later")).text();
    await waitFor(async () => ((await store.stored(id)) as { ticks: number }).ticks === 2, "the tick to be saved", 2000);
    release.resolve();
    expect(await (await waiting).json()).toEqual({ ticks: 2 });
  });
});

describe("a failing store", () => {
  let log: ReturnType<typeof captureErrorLog>;
  beforeEach(() => (log = captureErrorLog()));
  afterEach(() => log.restore());

  it("answers 503 state_save_failed, keeps the state dirty and retries with backoff until saved", async () => {
    const store = new TestStore();
    const registry = setup({ use: { counter }, store });
    const app = mountRegistry(registry);
    const server = await listen(app);
    try {
      const send = (method: string) =>
        fetch(`${server.url}${RAW}/`, { method, headers: { "X-RivetKit-Actor-Query": actorQuery("counter", ["f"]) } });
      expect((await send("POST")).status).toBe(200);
      const id = await registry.createServerClient().counter.get(["f"]).resolve();

      store.failNext(3);
      const failed = await send("POST");
      expect(failed.status).toBe(503);
      expect(failed.headers.get("content-type")).toMatch(/^application\/json/);
      expect(await failed.json()).toEqual({ code: "state_save_failed", message: expect.any(String) });
      expect(await store.stored(id)).toEqual({ count: 1 });

      // Nothing mutates the state again; only the retries can save it.
      await waitFor(async () => ((await store.stored(id)) as { count: number }).count === 2, "a retry to save the change");
      expect(store.saveAttempts).toBe(5);
      const delays = log.lines.flatMap((l) => /retrying in (\d+) ms/.exec(l)?.[1] ?? []).map(Number);
      expect(delays).toEqual([100, 200, 400]);
      expect(log.lines.join("\n")).toContain("disk on fire");

      expect(await (await send("GET")).json()).toEqual({ count: 2 });
      expect(await (await send("POST")).json()).toEqual({ count: 3 });
      expect(await store.stored(id)).toEqual({ count: 3 });
    } finally {
      await server.close();
      await registry.shutdown();
    }
  });

  it("makes c.saveState() reject, and resolve again once the store recovers", async () => {
    const store = new TestStore();
    const saver = actor({
      state: { n: 0 },
      onFetch: async (c) => {
        c.state.n++;
        const outcome = await c.saveState().then(
          () => "saved",
          (err: Error) => `rejected: ${err.message}`,
        );
        return new Response(outcome);
      },
      options: { stateSaveInterval: 60_000 },
    });
    const registry = setup({ use: { saver }, store });
    try {
      const handle = registry.createServerClient().saver.getOrCreate(["s"]);
      store.setFailing(true);
      const res = await handle.fetch("/");
      expect(res.status).toBe(503);
      store.setFailing(false);
      const id = await handle.resolve();
      await waitFor(async () => (await store.stored(id)) !== undefined, "a retry to save");
      const ok = await handle.fetch("/");
      expect(await ok.text()).toBe("saved");
      expect(await store.stored(id)).toEqual({ n: 2 });
    } finally {
      await registry.shutdown();
    }
  });

  it("keeps an actor awake with its unsaved state, without running onStop, until a save succeeds", async () => {
    const events: string[] = [];
    const store = new TestStore();
    const sleepy = actor({
      state: { count: 0 },
      onStart: () => void events.push("start"),
      onStop: () => void events.push("stop"),
      onFetch: (c, req) => {
        if (req.method === "POST") c.state.count++;
        return Response.json(c.state);
      },
      options: { sleepTimeout: 20, stateSaveInterval: 60_000 },
    });
    const registry = setup({ use: { sleepy }, store });
    try {
      const handle = registry.createServerClient().sleepy.getOrCreate(["z"]);
      const id = await handle.resolve();
      store.setFailing(true);
      expect((await handle.fetch("/", { method: "POST" })).status).toBe(503);
      await delay(300);
      expect(events).toEqual(["start"]);

      store.setFailing(false);
      await waitFor(() => events.includes("stop"), "the actor to sleep once saving works", 5000);
      expect(await store.stored(id)).toEqual({ count: 1 });
      expect(await (await handle.fetch("/")).json()).toEqual({ count: 1 });
      expect(events).toEqual(["start", "stop", "start"]);
    } finally {
      await registry.shutdown();
    }
  });

  it("restarts an actor in place when the save after onStop fails, and sleeps once it can save", async () => {
    const events: string[] = [];
    const store = new TestStore();
    let breakStoreInOnStop = true;
    const fragile = actor({
      state: { count: 0, stops: 0 },
      createVars: () => void events.push("vars"),
      onCreate: () => void events.push("create"),
      onStart: () => void events.push("start"),
      onStop: (c) => {
        events.push("stop");
        c.state.stops++;
        if (breakStoreInOnStop) store.setFailing(true);
        breakStoreInOnStop = false;
      },
      onFetch: (c, req) => {
        if (req.method === "POST") c.state.count++;
        return Response.json(c.state);
      },
      options: { sleepTimeout: 20, stateSaveInterval: 60_000 },
    });
    const registry = setup({ use: { fragile }, store });
    try {
      const handle = registry.createServerClient().fragile.getOrCreate(["r"]);
      const id = await handle.resolve();
      expect((await handle.fetch("/", { method: "POST" })).status).toBe(200);
      await waitFor(() => events.length === 6, "onStop, then a restart in place");
      expect(events).toEqual(["vars", "create", "start", "stop", "vars", "start"]);
      await delay(100);
      expect(events).toHaveLength(6);

      store.setFailing(false);
      await waitFor(() => events.length === 7, "the actor to sleep once saving works");
      expect(await store.stored(id)).toEqual({ count: 1, stops: 2 });
      expect(await (await handle.fetch("/")).json()).toEqual({ count: 1, stops: 2 });
      expect(events).toEqual(["vars", "create", "start", "stop", "vars", "start", "stop", "vars", "start"]);
    } finally {
      await registry.shutdown();
    }
  });

  it("is retried during shutdown until the state is saved", async () => {
    const store = new TestStore();
    const later = actor({
      state: { late: false },
      onFetch: (c) => {
        setTimeout(() => (c.state.late = true), 5);
        return Response.json(c.state);
      },
      options: { stateSaveInterval: 60_000 },
    });
    const registry = setup({ use: { later }, store });
    const handle = registry.createServerClient().later.getOrCreate(["l"]);
    await (await handle.fetch("/")).text();
    const id = await handle.resolve();
    await delay(20);
    store.failNext(2);
    await registry.shutdown();
    expect(await store.stored(id)).toEqual({ late: true });
    expect(store.closed).toBe(true);
  });
});

describe("fileStore across registries", () => {
  it("lets a fresh registry on the same directory read what another wrote", async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const first = setup({ use: { counter }, store: fileStore({ dir }) });
      const handle = first.createServerClient().counter.getOrCreate(["k"]);
      for (let i = 0; i < 3; i++) await (await handle.fetch("/", { method: "POST" })).text();
      const id = await handle.resolve();

      // No shutdown: every acknowledged change is already on disk.
      const second = setup({ use: { counter }, store: fileStore({ dir }) });
      const client = second.createServerClient();
      expect(await (await client.counter.get(["k"]).fetch("/")).json()).toEqual({ count: 3 });
      expect(await client.counter.get(["k"]).resolve()).toBe(id);
      expect(await (await client.counter.getForId(id).fetch("/")).json()).toEqual({ count: 3 });
      await second.shutdown();
      await first.shutdown();
    } finally {
      await cleanup();
    }
  });
});

describe("a child process killed with SIGKILL", () => {
  const fixture = path.join(__dirname, "fixtures", "counter-server.ts");
  let child: ChildProcess | undefined;
  afterEach(() => {
    child?.kill("SIGKILL");
    child = undefined;
  });

  /** Starts the fixture app on `dir`; resolves with its base URL and a copy of its stderr so far. */
  async function startChild(dir: string, env: Record<string, string> = {}) {
    const proc = spawn(process.execPath, ["--import", "tsx", fixture, dir], {
      cwd: path.join(__dirname, ".."),
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = proc;
    let stderr = "";
    proc.stderr!.on("data", (chunk) => (stderr += chunk));
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: proc.stdout! }).once("line", resolve);
      proc.once("exit", (code) => reject(new Error(`child exited with ${code}: ${stderr}`)));
    });
    const { port } = JSON.parse(line) as { port: number };
    return { url: `http://127.0.0.1:${port}`, stderr: () => stderr, exited, proc };
  }

  const post = (url: string) =>
    fetch(`${url}${RAW}/`, { method: "POST", headers: { "X-RivetKit-Actor-Query": actorQuery("counter", ["k"]) } });

  async function countOnDisk(dir: string): Promise<number> {
    const registry = setup({ use: { counter }, store: fileStore({ dir }) });
    try {
      const res = await registry.createServerClient().counter.get(["k"]).fetch("/");
      return (await res.json()).count;
    } finally {
      await registry.shutdown();
    }
  }

  it("keeps every acknowledged increment", async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const app = await startChild(dir);
      const n = 25;
      let acknowledged = 0;
      for (let i = 0; i < n; i++) {
        const res = await post(app.url);
        expect(res.status).toBe(200);
        expect(await res.json()).toEqual({ count: i + 1 });
        acknowledged++;
      }
      app.proc.kill("SIGKILL");
      await app.exited;
      expect(await countOnDisk(dir)).toBe(acknowledged);
    } finally {
      await cleanup();
    }
  });

  it("keeps at least every acknowledged increment when killed amid concurrent requests", async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const app = await startChild(dir);
      let highest = 0;
      let acknowledged = 0;
      const enough = deferred();
      const requests = Array.from({ length: 40 }, () =>
        post(app.url)
          .then(async (res) => {
            if (res.status !== 200) return;
            highest = Math.max(highest, (await res.json()).count);
            if (++acknowledged === 15) enough.resolve();
          })
          .catch(() => {}),
      );
      await enough.promise;
      app.proc.kill("SIGKILL");
      await app.exited;
      await Promise.all(requests);
      const onDisk = await countOnDisk(dir);
      expect(onDisk).toBeGreaterThanOrEqual(highest);
      expect(onDisk).toBeGreaterThanOrEqual(acknowledged);
      expect(onDisk).toBeLessThanOrEqual(40);
    } finally {
      await cleanup();
    }
  });

  it("reports failed saves as 503, retries them and never has an unhandled rejection", async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const app = await startChild(dir, { FAIL_SAVES: "3" });
      const res = await post(app.url);
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({ code: "state_save_failed", message: expect.any(String) });
      const { actorId } = (await (
        await fetch(`${app.url}/registry/actors/resolve`, {
          method: "POST",
          headers: { "X-RivetKit-Actor-Query": actorQuery("counter", ["k"]) },
        })
      ).json()) as { actorId: string };

      const disk = fileStore({ dir });
      await waitFor(async () => (await disk.load(actorId)) === JSON.stringify({ count: 1 }), "a retry to reach the disk");
      expect(await (await fetch(`${app.url}/unhandled`)).json()).toEqual({ unhandled: 0 });
      expect(app.stderr()).toContain("saving state failed");
      expect(app.stderr()).toContain("injected save failure");
    } finally {
      await cleanup();
    }
  });
});
