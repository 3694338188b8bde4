import { spawn } from "node:child_process";
import http from "node:http";
import * as path from "node:path";
import { createInterface } from "node:readline";
import express from "express";
import { actor, actorMiddleware, setup } from "express-actors";
import { coreOf } from "../lib/registry/setup";
import { allChunks, downloadActor } from "./fixtures/download-actor";
import { delay } from "./helpers/actor-harness";
import { listen } from "./helpers/servers";
import { within } from "./helpers/ws-harness";

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
      let firstChunk!: () => void;
      const streaming = new Promise<void>((resolve) => (firstChunk = resolve));
      const outcome = new Promise<{ ended: boolean; aborted: boolean; text: string }>((resolve) => {
        http.get(`${server.url}/registry/actors/raw/http/events`, { headers: { "x-rivetkit-actor-query": query } }, (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            text += chunk;
            firstChunk();
          });
          res.on("end", () => resolve({ ended: true, aborted: false, text }));
          res.on("aborted", () => resolve({ ended: false, aborted: true, text }));
        });
      });
      // Shut down mid-stream: once a tick has arrived, however slow the machine.
      await within(streaming, "the first tick", 10_000);
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

describe("registry.shutdown() with a handler still running", () => {
  it("ends an event stream it returns after shutdown began", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const late = actor({
      onAuth: () => null,
      onFetch: async () => {
        await gate;
        const body = new ReadableStream<Uint8Array>({
          start: (controller) => controller.enqueue(new TextEncoder().encode("data: first\n\n")),
        });
        return new Response(body, { headers: { "content-type": "Text/Event-Stream; charset=utf-8" } });
      },
    });
    const registry = setup({ use: { late } });
    const app = express();
    app.use("/registry", actorMiddleware(registry));
    const server = await listen(app);
    try {
      const query = JSON.stringify({ getOrCreateForKey: { name: "late", key: ["a"] } });
      const res = fetch(`${server.url}/registry/actors/raw/http/events`, { headers: { "x-rivetkit-actor-query": query } });
      await delay(100);
      const shutdown = registry.shutdown();
      release();
      // Without the fix the stream stays open and shutdown waits out its 10 s grace.
      const text = await within((await res).text(), "the event stream to end", 8000);
      await shutdown;
      expect(text).toBe("data: first\n\n");
    } finally {
      await server.close();
    }
  });
});

// A download that is not an event stream is finite: cutting it short with a clean end would make
// a truncated file look complete. It may finish within the grace period; past it, the connection
// is destroyed so the client sees the truncation.
describe("registry.shutdown() with a finite download streaming", () => {
  const query = JSON.stringify({ getOrCreateForKey: { name: "download", key: ["a"] } });
  const download = (base: string, count = 5) =>
    fetch(`${base}/registry/actors/raw/http/file?count=${count}`, { headers: { "x-rivetkit-actor-query": query } });

  async function start() {
    const endings: string[] = [];
    const registry = setup({ use: { download: downloadActor((how) => endings.push(how)) } });
    const app = express();
    app.use("/registry", actorMiddleware(registry));
    return { registry, endings, server: await listen(app) };
  }

  it("lets it finish within the grace period, then resolves", async () => {
    const { registry, endings, server } = await start();
    try {
      const res = await download(server.url);
      const text = res.text();
      await delay(700);
      await registry.shutdown();
      expect(endings).toEqual(["complete"]);
      expect(res.status).toBe(200);
      expect(await text).toBe(allChunks(5));
    } finally {
      await server.close();
    }
  });

  it("destroys the connection at the deadline, so the client's read rejects", async () => {
    const warn = jest.spyOn(console, "warn").mockImplementation(() => {});
    const { registry, endings, server } = await start();
    try {
      const res = await download(server.url, 20);
      const text = res.text();
      text.catch(() => {});
      await delay(700);
      await coreOf(registry).shutdown(600);
      expect(endings).toEqual(["cancelled"]);
      await expect(text).rejects.toThrow("terminated");
      expect(warn.mock.calls.flat().join(" ")).toContain("shutdown deadline");
    } finally {
      warn.mockRestore();
      await server.close();
    }
  });

  it("delivers it whole through the README's SIGTERM handler", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "fixtures", "stream-server.ts")], {
      cwd: path.join(__dirname, ".."),
      stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      let stderr = "";
      child.stderr!.on("data", (chunk) => (stderr += chunk));
      const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout! }).once("line", resolve);
        child.once("exit", (code) => reject(new Error(`the app exited with ${code}: ${stderr}`)));
      });
      const res = await download(`http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}`);
      const text = res.text();
      await delay(700);
      child.kill("SIGTERM");
      expect(await text).toBe(allChunks(5));
      expect(await exited).toBe(0);
      expect(stderr).toBe("");
    } finally {
      child.kill("SIGKILL");
    }
  }, 20_000);
});
