/**
 * A standalone app for websocket-process.test.ts, run in a child process so that a real
 * process-level listener sees any uncaught exception or unhandled rejection:
 *   node --import tsx ws-crash-server.ts
 * Prints {"port":n} once listening; GET /failures lists what the process listeners caught.
 */
import type { AddressInfo } from "node:net";
import express from "express";
import expressWs from "express-ws";
import { actor, actorMiddleware, setup } from "../../lib";

const failures: string[] = [];
process.on("uncaughtException", (err) => failures.push(`uncaughtException: ${err.message}`));
process.on("unhandledRejection", (err) => failures.push(`unhandledRejection: ${String(err)}`));

const boom = () => new Error("boom from the actor");

const crashy = actor({
  state: { n: 0 },
  onAuth: (_args, params) => {
    const mode = (params as { mode?: string } | undefined)?.mode;
    if (mode === "auth-throws") throw boom();
    if (mode === "auth-rejects") return Promise.reject(boom());
    return null;
  },
  onWebSocket: async (c, ws, { request }) => {
    switch (new URL(request.url).pathname) {
      case "/throw":
        throw boom();
      case "/reject":
        await new Promise((resolve) => setTimeout(resolve, 5));
        throw boom();
      case "/listener":
        ws.addEventListener("message", () => {
          throw boom();
        });
        return;
      case "/async-listener":
        ws.addEventListener("message", async () => {
          throw boom();
        });
        return;
      case "/onmessage":
        ws.onmessage = () => {
          throw boom();
        };
        return;
      case "/handle-event":
        ws.addEventListener("message", {
          handleEvent() {
            throw boom();
          },
        });
        return;
      case "/close-listener":
        ws.addEventListener("close", () => {
          throw boom();
        });
        ws.onerror = () => {
          throw boom();
        };
        return;
      case "/bad-state":
        ws.addEventListener("message", async () => {
          c.state.n = NaN;
          await c.saveState().catch(() => ws.send("save failed"));
          c.state.n = 1;
        });
        return;
      default:
        ws.addEventListener("message", (e) => ws.send(e.data as string));
    }
  },
});

const registry = setup({ use: { crashy } });
const app = express();
expressWs(app);
app.get("/failures", (_req, res) => {
  res.json(failures);
});
app.use("/registry", actorMiddleware(registry, { maxWebSocketMessageSize: 1024 }));
const server = app.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: (server.address() as AddressInfo).port }));
});
