import { launchDemoCluster, type DemoClusterRun } from "./helpers/demo-cluster";
import { deletePrefix, describeWithService, tempDatabase, uniqueName } from "./helpers/services";

jest.setTimeout(120_000);

// `npm run demo:cluster` (demo/cluster.ts) as a user runs it: three demo processes on one machine.
describeWithService("postgres", "npm run demo:cluster", () => {
  describeWithService("redis", "over the machine's Redis", () => {
    let db: Awaited<ReturnType<typeof tempDatabase>>;
    let run: DemoClusterRun;
    let ports: number[];
    const prefix = uniqueName("ea_demo_cluster") + ":";

    beforeAll(async () => {
      db = await tempDatabase();
      run = await launchDemoCluster({ databaseUrl: db.url, prefix });
      ports = run.ports;
    });
    afterAll(async () => {
      await run?.stop();
      await db?.drop();
      await deletePrefix(prefix);
    });

    const node = (i: number) => `http://127.0.0.1:${ports[i]}`;
    const increment = (i: number) =>
      fetch(`${node(i)}/registry/actors/raw/http/increment`, {
        method: "POST",
        headers: { "X-RivetKit-Actor-Query": JSON.stringify({ getOrCreateForKey: { name: "counter", key: ["shared"] } }) },
      });

    test("the page is served by every node", async () => {
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`${node(i)}/`);
        expect(res.status).toBe(200);
        expect(await res.text()).toContain("<html");
      }
    });

    test("one counter incremented through each node in turn counts exactly", async () => {
      for (let n = 1; n <= 9; n++) {
        const res = await increment(n % 3);
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

    test("a node killed with SIGKILL stays down, the others running; one of them takes its counter over", async () => {
      // The first increment went to node 1, which has owned the counter since.
      const mark = run.lines.length;
      process.kill(run.pid(ports[1]), "SIGKILL");
      // Until the lease of the default 10 s expires: 503 owner_unreachable.
      let res = await increment(2);
      let refused = 0;
      while (res.status === 503) {
        refused++;
        expect((await res.json()).code).toBe("owner_unreachable");
        await new Promise((resolve) => setTimeout(resolve, 250));
        res = await increment(2);
      }
      expect(refused).toBeGreaterThan(0);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ count: 10 });
      await run.waitFor(new RegExp(`^\\[${ports[1]}\\] exited \\(SIGKILL\\); 2 node\\(s\\) still running \\(\`start ${ports[1]}\` starts it again\\)$`), mark);
      // Not restarted: only a clean shutdown is.
      await expect(fetch(`${node(1)}/registry/health`)).rejects.toThrow();
      expect(run.lines.slice(mark).join("\n")).not.toContain(`[${ports[1]}] running again`);
    });

    test("the launcher's commands: start brings the killed node back; restart drains a node and starts it again on its port", async () => {
      let mark = run.lines.length;
      run.send(`start ${ports[1]}`);
      await run.waitFor(new RegExp(`^\\[${ports[1]}\\] running again: pid \\d+, healthy$`), mark);
      expect((await fetch(`${node(1)}/registry/health`)).status).toBe(200);

      // Node 2 took the counter over: restarting it hands the counter on with its count.
      const before = run.pid(ports[2]);
      mark = run.lines.length;
      run.send(`restart ${ports[2]}`);
      await run.waitFor(new RegExp(`^\\[${ports[2]}\\] shut down cleanly \\(pid \\d+\\); starting it again on port ${ports[2]}$`), mark);
      const [, pid] = await run.waitFor(new RegExp(`^\\[${ports[2]}\\] running again: pid (\\d+), healthy$`), mark);
      expect(Number(pid)).not.toBe(before);
      expect(run.pid(ports[2])).toBe(Number(pid));
      for (const [i, count] of [[2, 11], [0, 12], [1, 13]]) {
        const res = await increment(i);
        expect(res.status).toBe(200);
        expect(await res.json()).toEqual({ count });
      }

      mark = run.lines.length;
      run.send("nodes");
      for (const port of ports) await run.waitFor(new RegExp(`^  ${port}: pid ${run.pid(port)}$`), mark);
      run.send(`start ${ports[0]}`);
      await run.waitFor(new RegExp(`^\\[${ports[0]}\\] is running \\(pid ${run.pid(ports[0])}\\)$`), mark);
      run.send("restart 1");
      await run.waitFor(new RegExp(`^restart what\\? one of the ports ${ports.join(", ")}$`), mark);
    });

    test("SIGTERM stops every node, and the launcher exits 0", async () => {
      expect(await run.stop()).toBe(0);
      for (let i = 0; i < 3; i++) await expect(fetch(`${node(i)}/registry/health`)).rejects.toThrow();
    });
  });
});
