import http from "node:http";
import express from "express";
import { actor, actorMiddleware, setup } from "express-actors";
import { listen } from "./helpers/servers";

// An endless Server-Sent Events stream must not hold registry.shutdown() for its grace period.
describe("registry.shutdown() with a streaming response open", () => {
  it("ends the stream cleanly (cancel runs) before shutdown resolves, then refuses new work", async () => {
    let cancelReason: unknown;
    const feed = actor({
      onAuth: () => null,
      onFetch: () => {
        let timer: NodeJS.Timeout;
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            timer = setInterval(() => controller.enqueue(new TextEncoder().encode("data: tick\n\n")), 20);
          },
          cancel(reason) {
            cancelReason = reason;
            clearInterval(timer);
          },
        });
        return new Response(body, { headers: { "content-type": "text/event-stream" } });
      },
    });
    const registry = setup({ use: { feed } });
    const app = express();
    app.use("/registry", actorMiddleware(registry));
    const server = await listen(app);
    try {
      const query = JSON.stringify({ getOrCreateForKey: { name: "feed", key: ["a"] } });
      const outcome = new Promise<{ ended: boolean; aborted: boolean; text: string }>((resolve) => {
        http.get(`${server.url}/registry/actors/raw/http/events`, { headers: { "x-rivetkit-actor-query": query } }, (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            text += chunk;
          });
          res.on("end", () => resolve({ ended: true, aborted: false, text }));
          res.on("aborted", () => resolve({ ended: false, aborted: true, text }));
        });
      });
      await new Promise((r) => setTimeout(r, 100));
      let streamEndedFirst = false;
      void outcome.then(() => (streamEndedFirst = true));
      await registry.shutdown();
      expect(streamEndedFirst).toBe(true);
      const result = await outcome;
      expect(result).toMatchObject({ ended: true, aborted: false });
      expect(result.text).toContain("data: tick");
      expect((cancelReason as Error).name).toBe("AbortError");

      const after = await fetch(`${server.url}/registry/actors/raw/http/events`, { headers: { "x-rivetkit-actor-query": query } });
      expect(after.status).toBe(503);
      expect(await after.json()).toMatchObject({ code: "shutting_down" });
    } finally {
      await server.close();
    }
  });
});
