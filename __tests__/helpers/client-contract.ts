import { actor, setup, UserError } from "express-actors";
import type { Client } from "express-actors/client";
import { expectErrorResponse } from "./wire";

// SPEC §3: createClient and registry.createServerClient() share one API and one set of semantics.
// Both client test files run this suite; each adds what differs (origin, onAuth) on its own.

/** What the actor saw of a request, as `echo` reports it. */
export interface Echo {
  method: string;
  url: string;
  path: string;
  search: string;
  headers: Record<string, string>;
  body: string;
  key: string[];
  actorId: string;
  input: unknown;
  auth: unknown;
}

export const echo = actor({
  createState: (_c, input: unknown) => ({ count: 0, input: input ?? null }),
  onAuth: ({ params }) => {
    if ((params as { token?: string } | undefined)?.token === "bad") throw new UserError("Bad token", { code: "bad_token" });
    return { params: params ?? null };
  },
  onFetch: async (c, req, { auth }) => {
    const url = new URL(req.url);
    if (url.pathname === "/count") {
      if (req.method === "POST") c.state.count++;
      return Response.json({ count: c.state.count });
    }
    if (url.pathname === "/teapot") return new Response("short and stout", { status: 418, headers: { "x-kind": "teapot" } });
    if (url.pathname === "/fail") throw new UserError("Nope", { code: "nope", metadata: { why: "test" } });
    if (url.pathname === "/stream") {
      const parts = ["one ", "two ", "three"];
      return new Response(
        new ReadableStream({
          async pull(controller) {
            await new Promise((resolve) => setTimeout(resolve, 5));
            const part = parts.shift();
            if (part === undefined) controller.close();
            else controller.enqueue(new TextEncoder().encode(part));
          },
        }),
        { headers: { "content-type": "text/plain" } },
      );
    }
    const echoed: Echo = {
      method: req.method,
      url: req.url,
      path: url.pathname,
      search: url.search,
      headers: Object.fromEntries(req.headers),
      body: req.method === "GET" || req.method === "HEAD" ? "" : await req.text(),
      key: c.key,
      actorId: c.actorId,
      input: c.state.input,
      auth: auth === undefined ? "<undefined>" : auth,
    };
    return Response.json(echoed);
  },
});

export const makeRegistry = () => setup({ use: { echo } });
export type TestRegistry = ReturnType<typeof makeRegistry>;

export interface ClientUnderTest {
  client: Client<TestRegistry>;
  registry: TestRegistry;
  close(): Promise<void>;
}

let unique = 0;
const fresh = (label: string) => [`${label}-${++unique}`];

const echoOf = async (res: Response): Promise<Echo> => {
  expect(res.status).toBe(200);
  return (await res.json()) as Echo;
};

export function describeClientContract(label: string, start: () => Promise<ClientUnderTest>) {
  describe(`client contract: ${label}`, () => {
    let ctx: ClientUnderTest;
    beforeAll(async () => {
      ctx = await start();
    });
    afterAll(() => ctx.close());

    it("getOrCreate reaches the actor and keeps its state between requests", async () => {
      const h = ctx.client.echo.getOrCreate(fresh("count"));
      expect(await (await h.fetch("/count", { method: "POST" })).json()).toEqual({ count: 1 });
      expect(await (await h.fetch("/count", { method: "POST" })).json()).toEqual({ count: 2 });
      expect(await (await h.fetch("/count")).json()).toEqual({ count: 2 });
    });

    it("takes a string key, an array key or no key", async () => {
      expect((await echoOf(await ctx.client.echo.getOrCreate("solo").fetch("/"))).key).toEqual(["solo"]);
      expect((await echoOf(await ctx.client.echo.getOrCreate(["a", "b"]).fetch("/"))).key).toEqual(["a", "b"]);
      expect((await echoOf(await ctx.client.echo.getOrCreate().fetch("/"))).key).toEqual([]);
    });

    it("carries keys with any characters, including non-Latin ones", async () => {
      const key = ["日本語", "emoji 🎉", "quote \" and \\ and \n", "café", ""];
      expect((await echoOf(await ctx.client.echo.getOrCreate(key).fetch("/"))).key).toEqual(key);
      expect((await echoOf(await ctx.client.echo.get(key).fetch("/"))).key).toEqual(key);
    });

    it("get finds an existing actor, and gives a 404 Response (not a rejection) for an unknown key", async () => {
      const key = fresh("get");
      const missing = await ctx.client.echo.get(key).fetch("/");
      await expectErrorResponse(missing, 404, "actor_not_found");
      const made = await echoOf(await ctx.client.echo.getOrCreate(key).fetch("/"));
      expect((await echoOf(await ctx.client.echo.get(key).fetch("/"))).actorId).toBe(made.actorId);
    });

    it("create hands its input to createState and resolves to a handle bound to that actor", async () => {
      const key = fresh("create");
      const h = await ctx.client.echo.create(key, { input: { start: 5 } });
      const seen = await echoOf(await h.fetch("/"));
      expect(seen.input).toEqual({ start: 5 });
      expect(seen.key).toEqual(key);
      expect(await h.resolve()).toBe(seen.actorId);
    });

    it("getOrCreate hands its input to a new actor only", async () => {
      const key = fresh("input");
      expect((await echoOf(await ctx.client.echo.getOrCreate(key, { input: "first" }).fetch("/"))).input).toBe("first");
      expect((await echoOf(await ctx.client.echo.getOrCreate(key, { input: "second" }).fetch("/"))).input).toBe("first");
    });

    it("create on a taken key rejects with code actor_already_exists", async () => {
      const key = fresh("dup");
      await ctx.client.echo.create(key);
      const err = await ctx.client.echo.create(key).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).toMatchObject({ code: "actor_already_exists" });
      expect((err as Error).message).toMatch(/exists/);
    });

    it("getForId reaches the actor behind an id; resolve() returns that id", async () => {
      const key = fresh("id");
      const id = await ctx.client.echo.getOrCreate(key).resolve();
      expect(typeof id).toBe("string");
      expect(await ctx.client.echo.get(key).resolve()).toBe(id);
      const seen = await echoOf(await ctx.client.echo.getForId(id).fetch("/"));
      expect(seen).toMatchObject({ actorId: id, key });
      expect(await ctx.client.echo.getForId(id).resolve()).toBe(id);
    });

    it("resolve() rejects with code actor_not_found when nothing matches", async () => {
      await expect(ctx.client.echo.get(fresh("none")).resolve()).rejects.toMatchObject({ code: "actor_not_found" });
      await expect(ctx.client.echo.getForId("no-such-id").resolve()).rejects.toMatchObject({ code: "actor_not_found" });
    });

    it("an unknown actor name gives a 404 Response and a rejecting resolve()", async () => {
      const untyped = ctx.client as unknown as Client<unknown>;
      await expectErrorResponse(await untyped.nope.getOrCreate("x").fetch("/"), 404, "actor_not_found");
      await expect(untyped.nope.getOrCreate("x").resolve()).rejects.toMatchObject({ code: "actor_not_found" });
    });

    it("a bad query from an untyped caller is a 400 Response, not a throw", async () => {
      const bad = ctx.client.echo.getOrCreate([1, 2] as unknown as string[]);
      await expectErrorResponse(await bad.fetch("/"), 400, "invalid_query");
      await expect(bad.resolve()).rejects.toMatchObject({ code: "invalid_query" });
    });

    it("handler errors come back as Responses with the JSON body of SPEC §5", async () => {
      const body = await expectErrorResponse(await ctx.client.echo.getOrCreate("e").fetch("/fail"), 400, "nope");
      expect(body).toEqual({ code: "nope", message: "Nope", metadata: { why: "test" } });
    });

    it("passes the actor's own status, headers and body through", async () => {
      const res = await ctx.client.echo.getOrCreate("e").fetch("/teapot");
      expect(res.status).toBe(418);
      expect(res.ok).toBe(false);
      expect(res.headers.get("x-kind")).toBe("teapot");
      expect(await res.text()).toBe("short and stout");
    });

    describe("fetch input", () => {
      const h = () => ctx.client.echo.getOrCreate("inputs");

      it("takes a path with its query string, percent-escapes kept", async () => {
        const seen = await echoOf(await h().fetch("/search/a%2Fb?q=a%20b&x=1&x=2"));
        expect(seen.path).toBe("/search/a%2Fb");
        expect(seen.search).toBe("?q=a%20b&x=1&x=2");
      });

      it.each([
        ["", "/"],
        ["/", "/"],
        ["no-slash", "/no-slash"],
        ["//double//a", "/double//a"],
        ["?only=query", "/"],
      ])("normalizes the path %j to one leading slash", async (input, path) => {
        expect((await echoOf(await h().fetch(input))).path).toBe(path);
      });

      it("drops a fragment", async () => {
        const seen = await echoOf(await h().fetch("/frag?a=1#section"));
        expect(seen.url).not.toContain("#");
        expect(seen.search).toBe("?a=1");
      });

      it("takes a URL, using only its path and search", async () => {
        const seen = await echoOf(await h().fetch(new URL("https://elsewhere.example:8443/p/q?x=1#frag")));
        expect(seen.path).toBe("/p/q");
        expect(seen.search).toBe("?x=1");
        expect(seen.url).not.toContain("elsewhere");
      });

      it("takes a Request: its path, method, headers and body", async () => {
        const req = new Request("http://ignored.example/r?z=9", {
          method: "PUT",
          headers: { "x-a": "1", "content-type": "text/plain" },
          body: "request body",
        });
        const seen = await echoOf(await h().fetch(req));
        expect(seen).toMatchObject({ method: "PUT", path: "/r", search: "?z=9", body: "request body" });
        expect(seen.headers).toMatchObject({ "x-a": "1", "content-type": "text/plain" });
      });

      it("lets init override a Request's method, headers and body", async () => {
        const req = new Request("http://ignored.example/r", { method: "PUT", headers: { "x-a": "1" }, body: "old" });
        const seen = await echoOf(await h().fetch(req, { method: "PATCH", headers: { "x-b": "2" }, body: "new" }));
        expect(seen).toMatchObject({ method: "PATCH", body: "new" });
        expect(seen.headers["x-b"]).toBe("2");
        // As with `new Request(request, init)`: init.headers replaces the Request's headers.
        expect(seen.headers["x-a"]).toBeUndefined();
      });

      it("drops a Request's body when init switches to GET", async () => {
        const req = new Request("http://ignored.example/r", { method: "POST", body: "dropped" });
        const seen = await echoOf(await h().fetch(req, { method: "GET" }));
        expect(seen).toMatchObject({ method: "GET", body: "" });
      });

      it("sends the init headers, and never the X-RivetKit-* ones to the actor", async () => {
        const seen = await echoOf(await h().fetch("/", { headers: { authorization: "Bearer t", "x-custom": "v" } }));
        expect(seen.headers).toMatchObject({ authorization: "Bearer t", "x-custom": "v" });
        expect(Object.keys(seen.headers).filter((k) => k.startsWith("x-rivetkit-"))).toEqual([]);
      });

      it("sends every method with its body", async () => {
        for (const method of ["POST", "PUT", "PATCH", "DELETE"]) {
          const seen = await echoOf(await h().fetch("/m", { method, body: `body of ${method}` }));
          expect(seen).toMatchObject({ method, body: `body of ${method}` });
        }
        expect((await echoOf(await h().fetch("/m", { method: "OPTIONS" }))).method).toBe("OPTIONS");
        const head = await h().fetch("/m", { method: "HEAD" });
        expect(head.status).toBe(200);
        expect(await head.text()).toBe("");
      });

      it("streams a ReadableStream request body (no duplex option needed)", async () => {
        const chunks = ["a", "b", "c"];
        const body = new ReadableStream<Uint8Array>({
          pull(controller) {
            const next = chunks.shift();
            if (next === undefined) controller.close();
            else controller.enqueue(new TextEncoder().encode(next));
          },
        });
        const seen = await echoOf(await h().fetch("/upload", { method: "POST", body }));
        expect(seen.body).toBe("abc");
      });

      it("rejects an input that is neither a path, a URL nor a Request", async () => {
        await expect(h().fetch(42 as unknown as string)).rejects.toBeInstanceOf(TypeError);
      });
    });

    it("streams a response body chunk by chunk", async () => {
      const res = await ctx.client.echo.getOrCreate("s").fetch("/stream");
      expect(res.headers.get("content-type")).toBe("text/plain");
      const reader = res.body!.getReader();
      const parts: string[] = [];
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(new TextDecoder().decode(value));
      }
      expect(parts.join("")).toBe("one two three");
      expect(parts.length).toBeGreaterThan(1);
    });

    it("is not a thenable, so it can be returned from async functions", async () => {
      const client = await Promise.resolve(ctx.client);
      expect(client).toBe(ctx.client);
    });
  });
}
