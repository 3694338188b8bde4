import { actor, actorMiddleware, setup } from "express-actors";
import { createClient } from "express-actors/client";
import { describeClientContract, makeRegistry, type Echo, type TestRegistry } from "./helpers/client-contract";
import { expressVersions, listen } from "./helpers/servers";
import { expectErrorResponse } from "./helpers/wire";

// createClient over a real 127.0.0.1 server, on both Express majors.

async function serve(express: (typeof expressVersions)[number]["express"], registry: Parameters<typeof actorMiddleware>[0]) {
  const app = express();
  app.use("/registry", actorMiddleware(registry));
  return listen(app);
}

describe.each(expressVersions)("createClient on $label", ({ express, label }) => {
  describeClientContract(`createClient (${label})`, async () => {
    const registry = makeRegistry();
    const server = await serve(express, registry);
    return {
      registry,
      client: createClient<TestRegistry>(server.url + "/registry"),
      close: async () => {
        await server.close();
        await registry.shutdown();
      },
    };
  });

  describe("over HTTP", () => {
    const registry = makeRegistry();
    let server: Awaited<ReturnType<typeof listen>>;
    let endpoint: string;
    beforeAll(async () => {
      server = await serve(express, registry);
      endpoint = server.url + "/registry";
    });
    afterAll(async () => {
      await server.close();
      await registry.shutdown();
    });

    it("hands the actor the request URL of the server's origin", async () => {
      const res = await createClient<TestRegistry>(endpoint).echo.getOrCreate("o").fetch("/a/b?c=d");
      const seen = (await res.json()) as Echo;
      expect(seen.url).toBe(`${server.url}/a/b?c=d`);
    });

    it("runs onAuth with the params, whose result is `auth`", async () => {
      const params = { token: "t-1", list: [1, 2] };
      const client = createClient<TestRegistry>(endpoint);
      const seen = (await (await client.echo.getOrCreate("p", { params }).fetch("/")).json()) as Echo;
      expect(seen.auth).toEqual({ params });
      const created = await client.echo.create(["p-created"], { params });
      expect(((await (await created.fetch("/")).json()) as Echo).auth).toEqual({ params });
      const id = await client.echo.get("p").resolve();
      expect(((await (await client.echo.getForId(id, { params }).fetch("/")).json()) as Echo).auth).toEqual({ params });
    });

    it("carries params with non-Latin characters", async () => {
      const params = { name: "名前 ✓" };
      const seen = (await (await createClient<TestRegistry>(endpoint).echo.getOrCreate("u", { params }).fetch("/")).json()) as Echo;
      expect(seen.auth).toEqual({ params });
    });

    it("returns onAuth refusals as Responses, and as rejections from resolve() and create()", async () => {
      const client = createClient<TestRegistry>(endpoint);
      const params = { token: "bad" };
      await expectErrorResponse(await client.echo.getOrCreate("r", { params }).fetch("/"), 400, "bad_token");
      await expect(client.echo.getOrCreate("r", { params }).resolve()).rejects.toMatchObject({ code: "bad_token" });
      await expect(client.echo.create(["r2"], { params })).rejects.toMatchObject({ code: "bad_token" });
    });

    it("tolerates trailing slashes on the endpoint", async () => {
      for (const suffix of ["/", "//"]) {
        const client = createClient<TestRegistry>(endpoint + suffix);
        expect((await client.echo.getOrCreate("slash").fetch("/x")).status).toBe(200);
        expect(typeof (await client.echo.getOrCreate("slash").resolve())).toBe("string");
      }
    });

    it("uses a custom fetch when given one", async () => {
      const urls: string[] = [];
      const client = createClient<TestRegistry>(endpoint, {
        fetch: (input, init) => {
          urls.push(String(input));
          return fetch(input, init);
        },
      });
      await client.echo.getOrCreate("custom").fetch("/via-custom");
      expect(urls).toEqual([`${endpoint}/actors/raw/http/via-custom`]);
    });

    it("honours an abort signal", async () => {
      const controller = new AbortController();
      controller.abort();
      const pending = createClient<TestRegistry>(endpoint).echo.getOrCreate("abort").fetch("/", { signal: controller.signal });
      await expect(pending).rejects.toMatchObject({ name: "AbortError" });
    });

    it("rejects only on network failure", async () => {
      const dead = await listen((_req, res) => res.end());
      const url = dead.url;
      await dead.close();
      const client = createClient<TestRegistry>(url + "/registry");
      // Node's fetch throws its own realm's TypeError, so match by name.
      await expect(client.echo.getOrCreate("x").fetch("/")).rejects.toMatchObject({ name: "TypeError" });
      await expect(client.echo.getOrCreate("x").resolve()).rejects.toMatchObject({ name: "TypeError" });
    });

    it("turns a non-JSON error page into an error with the HTTP status", async () => {
      const client = createClient<TestRegistry>(server.url + "/not-the-mount");
      const err = await client.echo.getOrCreate("x").resolve().catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "http_404" });
    });
  });

  it("gets 403 forbidden from an actor without onAuth", async () => {
    const closed = actor({ onFetch: () => new Response("never") });
    const registry = setup({ use: { closed } });
    const server = await serve(express, registry);
    try {
      const client = createClient<typeof registry>(server.url + "/registry");
      await expectErrorResponse(await client.closed.getOrCreate("x").fetch("/"), 403, "forbidden");
      await expect(client.closed.create("x")).rejects.toMatchObject({ code: "forbidden" });
    } finally {
      await server.close();
      await registry.shutdown();
    }
  });
});
