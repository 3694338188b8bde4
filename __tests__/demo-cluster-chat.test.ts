import type { Browser, BrowserContext, Page } from "playwright-core";
import { Redis } from "ioredis";
import { createClient } from "express-actors/client";
import type { DemoRegistry } from "../demo/server";
import { CHROMIUM, hasChromium, launchChromium, screenshot } from "./helpers/browser-harness";
import { launchDemoCluster, type DemoClusterRun } from "./helpers/demo-cluster";
import { REDIS_URL, deletePrefix, describeWithService, tempDatabase, uniqueName } from "./helpers/services";

// The demo page's chat in headless Chromium against `npm run demo:cluster` (demo/cluster.ts): two
// pages on two nodes in one room, and the room's node restarted with SIGTERM while they chat.

if (!hasChromium && !process.env.CI) {
  // Outside CI a machine without Chromium skips these, visibly; in CI (CI set) they always run and fail instead.
  test(`browser tests skipped: no ${CHROMIUM}`, () => {
    console.warn(`browser tests skipped: no ${CHROMIUM} (apt-get install chromium to run them; in CI they fail instead)`);
  });
} else {
  jest.setTimeout(120_000);

  describeWithService("postgres", "the demo's chat across npm run demo:cluster", () => {
    describeWithService("redis", "over the machine's Redis", () => {
      let db: Awaited<ReturnType<typeof tempDatabase>>;
      let run: DemoClusterRun;
      let browser: Browser;
      const contexts: BrowserContext[] = [];
      const prefix = uniqueName("ea_demo_chat") + ":";
      const redis = new Redis(REDIS_URL, { lazyConnect: true });

      beforeAll(async () => {
        db = await tempDatabase();
        browser = await launchChromium(); // first: without Chromium (in CI) no cluster is left running
        run = await launchDemoCluster({ databaseUrl: db.url, prefix });
      });
      afterAll(async () => {
        for (const context of contexts) await context.close();
        await browser?.close();
        await run?.stop();
        await db?.drop();
        await deletePrefix(prefix);
        redis.disconnect();
      });

      const node = (i: number) => `http://127.0.0.1:${run.ports[i]}`;

      /** A fresh browser profile, as a second user would have. */
      async function newPage(): Promise<Page> {
        const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
        contexts.push(context);
        return context.newPage();
      }

      async function join(page: Page, url: string, room: string, name: string) {
        await page.goto(url + "/");
        await page.fill("#chat-room", room);
        await page.fill("#chat-name", name);
        await page.click("#chat-join-button");
        await page.locator("#chat-status.ok", { hasText: `connected to "${room}" as ${name}` }).waitFor();
      }

      async function say(page: Page, text: string) {
        await page.fill("#chat-text", text);
        await page.press("#chat-text", "Enter");
      }

      /** The messages the page shows, each as "<server time> <from>: <text>". */
      const shown = (page: Page) =>
        page.$$eval("#chat-messages li.message", (items) =>
          items.map((li) => `${li.querySelector("time")!.dateTime} ${li.querySelector(".from")!.textContent}: ${li.lastElementChild!.textContent}`),
        );
      const texts = async (page: Page) => (await shown(page)).map((line) => line.slice(line.indexOf(" ") + 1));

      /** Which node holds the room's lease (the cluster's Redis keys under the run's prefix). */
      async function owner(room: string): Promise<{ nodeId: string; url: string }> {
        const id = await createClient<DemoRegistry>(`${node(2)}/registry`).chat.getOrCreate([room], { params: { name: "probe" } }).resolve();
        const lease = await redis.get(`${prefix}lease:${id}`);
        expect(lease).not.toBeNull();
        const nodeId = lease!.split(" ")[0];
        const record = JSON.parse((await redis.get(`${prefix}node:${nodeId}`)) ?? "{}") as { url?: string };
        return { nodeId, url: record.url ?? "" };
      }

      test("two pages on two nodes chat in one room, and both get back into it, history intact, when its node restarts", async () => {
        const room = uniqueName("room");
        const [ann, bob] = [await newPage(), await newPage()];
        // Ann's node is the first to see the room, so it takes it; Bob's socket is relayed there.
        await join(ann, node(0), room, "ann");
        await join(bob, node(1), room, "bob");
        await ann.locator("#chat-online", { hasText: "online: ann, bob" }).waitFor();
        const first = await owner(room);
        expect(first.url).toBe(`${node(0)}/registry`);

        await say(ann, "hello from node A");
        await bob.locator("#chat-messages li.message", { hasText: "hello from node A" }).waitFor();
        await say(bob, "hi, this is node B");
        await ann.locator("#chat-messages li.message", { hasText: "hi, this is node B" }).waitFor();
        await say(ann, "about to restart my node");
        await bob.locator("#chat-messages li.message", { hasText: "about to restart my node" }).waitFor();
        const before = await shown(ann);
        expect(await shown(bob)).toEqual(before);
        expect(before.map((line) => line.slice(line.indexOf(" ") + 1))).toEqual([
          "ann: hello from node A",
          "bob: hi, this is node B",
          "ann: about to restart my node",
        ]);

        // A deploy's restart of the room's node: SIGTERM, which the launcher answers by starting it again.
        const mark = run.lines.length;
        const pid = run.pid(run.ports[0]);
        process.kill(pid, "SIGTERM");
        // Ann's page waits for its own node to come back, retrying; the moment a user sees.
        await ann.locator("#chat-status.pending", { hasText: "the node is restarting — reconnecting" }).waitFor();
        await screenshot(ann, "cluster-chat-reconnecting");

        // Bob's node is up: Bob is back first, on a new owner, and chats on.
        await bob.waitForFunction(() => window.demo.chatRejoins === 1);
        await say(bob, "still here while node A restarts");
        await run.waitFor(new RegExp(`^\\[${run.ports[0]}\\] shut down cleanly \\(pid ${pid}\\); starting it again on port ${run.ports[0]}$`), mark);
        await run.waitFor(new RegExp(`^\\[${run.ports[0]}\\] running again: pid \\d+, healthy$`), mark);
        await ann.waitForFunction(() => window.demo.chatRejoins === 1, null, { timeout: 30_000 });
        await ann.locator("#chat-messages li.message", { hasText: "still here while node A restarts" }).waitFor();
        await ann.locator("#chat-online", { hasText: "bob" }).waitFor();
        await say(ann, "back on node A");
        await bob.locator("#chat-messages li.message", { hasText: "back on node A" }).waitFor();

        for (const [page, name] of [[ann, "ann"], [bob, "bob"]] as const) {
          // Every message shown before is still there, once, and the new ones follow.
          const after = await shown(page);
          expect(after.slice(0, before.length)).toEqual(before);
          expect(after.slice(before.length).map((line) => line.slice(line.indexOf(" ") + 1))).toEqual([
            "bob: still here while node A restarts",
            "ann: back on node A",
          ]);
          expect(await texts(page)).toEqual(await texts(ann));
          // The room's node closed the socket with 1012 service_restart (Bob's through the relay):
          // the page said it was reconnecting, then was in the room again.
          const statuses = await page.evaluate(() => window.demo.chatStatuses);
          expect(statuses).toContain("the node is restarting — reconnecting in 0.25 s (1012 service_restart)");
          expect(statuses[statuses.length - 1]).toBe(`connected to "${room}" as ${name}`);
          await page.locator("#chat-messages li.notice", { hasText: /^back in the room after [\d.]+ s \(1012 service_restart\)/ }).waitFor();
          expect(await page.locator("#chat-error").isHidden()).toBe(true);
          expect(await page.locator("#chat-text").isEnabled()).toBe(true);
          await screenshot(page, `cluster-chat-after-restart-${name}`);
        }

        // Ann's retries met her node down (1006) and backed off, doubling from 250 ms.
        const waits = (await ann.evaluate(() => window.demo.chatStatuses))
          .map((status) => /^the node is restarting — reconnecting in ([\d.]+) s \(1012 service_restart(?:, last try: ([^)]+))?\)$/.exec(status))
          .filter((match) => match !== null);
        expect(waits.length).toBeGreaterThan(1);
        expect(waits.map((match) => Number(match[1]))).toEqual(waits.map((_, i) => Math.min(0.25 * 2 ** i, 5)));
        expect(waits[1][2]).toBe("1006");

        // A new owner: another node, or the restarted one as a new process; never the one that left.
        expect((await owner(room)).nodeId).not.toBe(first.nodeId);
        expect((await fetch(`${node(0)}/registry/health`)).status).toBe(200);
      });

      test("a refusal and a user's own leave do not reconnect", async () => {
        const page = await newPage();
        const room = uniqueName("room");
        await join(page, node(1), room, "cy");
        await page.click("#chat-leave");
        await page.locator("#chat-status.idle", { hasText: `left "${room}"` }).waitFor();
        await page.locator("#chat-messages li.notice", { hasText: "you left the room" }).waitFor();
        // The staff room is refused by the actor (4403), here on whichever node owns it.
        await page.click("#chat-forbidden");
        await page.locator("#chat-status.bad", { hasText: "4403 forbidden" }).waitFor();
        await page.waitForTimeout(1000); // past the first retries a reconnect would have made
        const statuses = await page.evaluate(() => window.demo.chatStatuses);
        expect(statuses.filter((status) => /reconnect/.test(status))).toEqual([]);
        expect(statuses.slice(-2)).toEqual(['connecting to "staff"…', "4403 forbidden"]);
        expect(await page.locator("#chat-leave").isDisabled()).toBe(true);
      });
    });
  });
}
