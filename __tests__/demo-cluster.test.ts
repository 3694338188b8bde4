import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import { createInterface } from "node:readline";
import { REDIS_URL, deletePrefix, describeWithService, freePort, tempDatabase, uniqueName } from "./helpers/services";

jest.setTimeout(120_000);

// `npm run demo:cluster` (demo/cluster.ts) as a user runs it: three demo processes on one machine.
describeWithService("postgres", "npm run demo:cluster", () => {
  describeWithService("redis", "over the machine's Redis", () => {
    let db: Awaited<ReturnType<typeof tempDatabase>>;
    let launcher: ChildProcess;
    let output = "";
    let ports: number[];
    const prefix = uniqueName("ea_demo_cluster") + ":";

    beforeAll(async () => {
      db = await tempDatabase();
      ports = [await freePort(), await freePort(), await freePort()];
      launcher = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "..", "demo", "cluster.ts")], {
        env: {
          ...process.env,
          DEMO_CLUSTER_PORTS: ports.join(","),
          DATABASE_URL: db.url,
          REDIS_URL,
          DEMO_CLUSTER_PREFIX: prefix,
          EXPRESS_ACTORS_LOG: "warn",
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      launcher.stderr!.on("data", (chunk) => (output += chunk));
      await new Promise<void>((resolve, reject) => {
        createInterface({ input: launcher.stdout! }).on("line", (line) => {
          output += line + "\n";
          if (line.includes("nodes ready")) resolve();
        });
        launcher.once("exit", (code) => reject(new Error(`demo:cluster exited with ${code}:\n${output}`)));
      });
    });
    afterAll(async () => {
      if (launcher && launcher.exitCode === null && launcher.signalCode === null) {
        launcher.kill("SIGTERM");
        await new Promise((resolve) => launcher.once("exit", resolve));
      }
      await db?.drop();
      await deletePrefix(prefix);
    });

    const node = (i: number) => `http://127.0.0.1:${ports[i]}`;

    test("the page is served by every node", async () => {
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`${node(i)}/`);
        expect(res.status).toBe(200);
        expect(await res.text()).toContain("<html");
      }
    });

    test("one counter incremented through each node in turn counts exactly", async () => {
      for (let n = 1; n <= 9; n++) {
        const res = await fetch(`${node(n % 3)}/registry/actors/raw/http/increment`, {
          method: "POST",
          headers: { "X-RivetKit-Actor-Query": JSON.stringify({ getOrCreateForKey: { name: "counter", key: ["shared"] } }) },
        });
        expect(res.status).toBe(200);
        expect(await res.json()).toEqual({ count: n });
      }
    });

    test("the live feed streams from every node, and reads the counter wherever it lives", async () => {
      for (let i = 0; i < 3; i++) {
        const controller = new AbortController();
        const res = await fetch(`${node(i)}/feed/shared/events`, { signal: controller.signal });
        expect(res.headers.get("content-type")).toBe("text/event-stream");
        const reader = res.body!.getReader();
        const first = new TextDecoder().decode((await reader.read()).value);
        expect(JSON.parse(first.replace(/^data: /, ""))).toMatchObject({ stream: i + 1, count: 9 });
        controller.abort();
      }
    });

    test("a node killed with SIGKILL leaves the others running; one of them takes its counter over", async () => {
      // The first increment went to node 1, which has owned the counter since.
      const pid = Number(new RegExp(`\\[${ports[1]}\\] cluster node on .* \\(pid (\\d+)\\)`).exec(output)?.[1]);
      expect(pid).toBeGreaterThan(0);
      process.kill(pid, "SIGKILL");
      const increment = () =>
        fetch(`${node(2)}/registry/actors/raw/http/increment`, {
          method: "POST",
          headers: { "X-RivetKit-Actor-Query": JSON.stringify({ getOrCreateForKey: { name: "counter", key: ["shared"] } }) },
        });
      // Until the lease of the default 10 s expires: 503 owner_unreachable.
      let res = await increment();
      let refused = 0;
      while (res.status === 503) {
        refused++;
        expect((await res.json()).code).toBe("owner_unreachable");
        await new Promise((resolve) => setTimeout(resolve, 250));
        res = await increment();
      }
      expect(refused).toBeGreaterThan(0);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ count: 10 });
      expect(output).toContain(`[${ports[1]}] exited (SIGKILL); 2 node(s) still running`);
    });

    test("SIGTERM stops every node, and the launcher exits 0", async () => {
      const exited = new Promise<number | null>((resolve) => launcher.once("exit", resolve));
      launcher.kill("SIGTERM");
      expect(await exited).toBe(0);
      for (let i = 0; i < 3; i++) await expect(fetch(`${node(i)}/registry/health`)).rejects.toThrow();
    });
  });
});
