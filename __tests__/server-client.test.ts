import { actor, memoryStore, setup } from "express-actors";
import type { StateStore } from "express-actors";
import { describeClientContract, makeRegistry, type Echo } from "./helpers/client-contract";
import { captureErrorLog, expectErrorResponse } from "./helpers/wire";

// registry.createServerClient(): the same API as createClient, in process, without onAuth.

describeClientContract("createServerClient", async () => {
  const registry = makeRegistry();
  return { registry, client: registry.createServerClient(), close: () => registry.shutdown() };
});

describe("createServerClient specifics", () => {
  let authCalls = 0;
  let releaseSecond!: () => void;
  let cancelled: unknown = "not cancelled";

  const guarded = actor({
    onAuth: () => {
      authCalls++;
      return { user: "from onAuth" };
    },
    onFetch: (_c, req, { auth }) => Response.json({ url: req.url, auth: auth === undefined ? "<undefined>" : auth }),
  });
  const closed = actor({ state: { n: 0 }, onFetch: (c) => Response.json({ n: ++c.state.n }) });
  const streamer = actor({
    onAuth: () => null,
    onFetch: () => {
      const second = new Promise<void>((resolve) => (releaseSecond = resolve));
      let step = 0;
      return new Response(
        new ReadableStream({
          async pull(controller) {
            step++;
            if (step === 1) controller.enqueue(new TextEncoder().encode("first"));
            else if (step === 2) {
              await second;
              controller.enqueue(new TextEncoder().encode("second"));
            } else controller.close();
          },
          cancel(reason) {
            cancelled = reason;
          },
        }),
      );
    },
  });
  /** Calls `closed` through c.client(), the server-side client every actor has. */
  const caller = actor({
    onAuth: () => null,
    onFetch: async (c) => c.client().closed.getOrCreate(["via-caller"]).fetch("/"),
  });

  const registry = setup({ use: { guarded, closed, streamer, caller } });
  const client = registry.createServerClient();
  afterAll(() => registry.shutdown());

  it("hands the actor a request URL with the origin http://actor", async () => {
    const res = await client.guarded.getOrCreate("u").fetch("/a/b?c=d");
    expect(((await res.json()) as Echo).url).toBe("http://actor/a/b?c=d");
  });

  it("never runs onAuth: auth is undefined, even with params", async () => {
    const res = await client.guarded.getOrCreate("u", { params: { token: "x" } }).fetch("/");
    expect(await res.json()).toMatchObject({ auth: "<undefined>" });
    await client.guarded.create(["created"], { params: { token: "x" } });
    await client.guarded.get("u").resolve();
    expect(authCalls).toBe(0);
  });

  it("reaches an actor without onAuth", async () => {
    const res = await client.closed.getOrCreate("x").fetch("/");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ n: 1 });
  });

  it("is what c.client() returns inside an actor", async () => {
    const res = await client.caller.getOrCreate("c").fetch("/");
    expect(await res.json()).toEqual({ n: 1 });
    expect(await (await client.closed.getOrCreate("via-caller").fetch("/")).json()).toEqual({ n: 2 });
  });

  it("streams: the first chunk arrives before the actor has written the rest", async () => {
    const res = await client.streamer.getOrCreate("s").fetch("/");
    const reader = res.body!.getReader();
    const decode = (v: Uint8Array | undefined) => new TextDecoder().decode(v);
    expect(decode((await reader.read()).value)).toBe("first");
    releaseSecond();
    expect(decode((await reader.read()).value)).toBe("second");
    expect((await reader.read()).done).toBe(true);
  });

  it("cancels the actor's stream when the caller cancels the body", async () => {
    const res = await client.streamer.getOrCreate("s").fetch("/");
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel("caller is done");
    expect(cancelled).toBe("caller is done");
  });

  it("frees the actor when a finished body is never read, so it can sleep", async () => {
    let slept!: () => void;
    const asleep = new Promise<void>((resolve) => (slept = resolve));
    const napper = actor({
      onFetch: () => Response.json({ unread: true }),
      onStop: () => slept(),
      options: { sleepTimeout: 20 },
    });
    const reg = setup({ use: { napper } });
    try {
      const res = await reg.createServerClient().napper.getOrCreate("n").fetch("/");
      expect(res.status).toBe(200);
      await asleep; // the body is still there to read afterwards
      expect(await res.json()).toEqual({ unread: true });
    } finally {
      await reg.shutdown();
    }
  });

  it("rejects a bad init like fetch does, instead of answering 500", async () => {
    await expect(client.closed.getOrCreate("x").fetch("/", { method: "GET", body: "x" })).rejects.toMatchObject({
      name: "TypeError",
    });
  });

  it("reports a store failure as a generic internal_error, logged, never its message", async () => {
    const base = memoryStore();
    const broken: StateStore = { ...base, lookupKey: () => Promise.reject(new Error("disk is on fire")) };
    const reg = setup({ use: { closed }, store: broken });
    const log = captureErrorLog();
    try {
      const res = await reg.createServerClient().closed.get("x").fetch("/");
      const body = await expectErrorResponse(res, 500, "internal_error");
      expect(JSON.stringify(body)).not.toContain("fire");
      const err = await reg.createServerClient().closed.get("x").resolve().catch((e: Error) => e);
      expect(err).toMatchObject({ code: "internal_error" });
      expect((err as Error).message).not.toContain("fire");
      expect(log.text()).toContain("disk is on fire");
    } finally {
      await reg.shutdown();
      log.restore();
    }
  });

  it("answers 503 shutting_down once the registry shuts down", async () => {
    const reg = setup({ use: { closed } });
    const late = reg.createServerClient();
    expect((await late.closed.getOrCreate("x").fetch("/")).status).toBe(200);
    await reg.shutdown();
    await expectErrorResponse(await late.closed.getOrCreate("x").fetch("/"), 503, "shutting_down");
    await expect(late.closed.getOrCreate("x").resolve()).rejects.toMatchObject({ code: "shutting_down" });
    await expect(late.closed.create("y")).rejects.toMatchObject({ code: "shutting_down" });
  });
});
