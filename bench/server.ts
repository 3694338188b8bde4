// The server side of the HTTP and WebSocket cases, in its own process (pinned to its own core by
// the runner) so the load generator never competes with it. Usage: server.ts memory|file|sqlite|postgres|redis
import type { ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import expressWs from "express-ws";
import { actor, actorMiddleware, forwardToActor, setup } from "express-actors";
import { sendToRunner } from "./common";
import { benchStore } from "./stores";

// Internal, from the compiled dist/ like the rest of the library here; typed from the sources.
const { actorUrlText, buildRequest, originOf } = require("../dist/http/request") as typeof import("../lib/http/request");

const payload = { hello: "world", n: 1 };

const registry = setup({
  use: {
    hello: actor({ onAuth: () => null, onFetch: () => Response.json(payload) }),
    counter: actor({
      state: { count: 0 },
      onAuth: () => null,
      onFetch: (c) => Response.json({ count: ++c.state.count }),
    }),
    echo: actor({
      onAuth: () => null,
      onWebSocket: (_c, websocket) => {
        websocket.addEventListener("message", (e) => websocket.send(e.data));
      },
    }),
  },
  store: benchStore(process.argv[2]),
});
const client = registry.createServerClient();

const { app } = expressWs(express());
app.get("/plain", (_req, res) => {
  res.json(payload);
});
// The plain route plus the two W3C objects every onFetch path creates, written the cheapest way
// (writeHead + end, no ETag), and nothing else: no headers copied, no signal, no actor. A lower
// bound for any router that hands real W3C objects to the actor on this Node, not a product path.
function writeJson(res: ServerResponse, response: Response) {
  const text = JSON.stringify(payload);
  res.writeHead(response.status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
app.get("/w3c-floor", (req, res) => {
  void new Request(`http://${req.headers.host}${req.url}`, { method: req.method });
  writeJson(res, Response.json(payload));
});
// The same plus the Request the contract asks for (the client's headers, a signal that follows the
// client), built by the library's own code: still no routing, actor, auth or response mapping.
app.get("/contract-request", (req, res) => {
  const built = buildRequest(req, res, actorUrlText(originOf(req), req.url), 1 << 20);
  writeJson(res, Response.json(payload));
  built.dispose();
});
app.get("/forward", forwardToActor(registry, { name: "hello", key: () => ["a"], path: () => "/" }));
app.get("/server-client", async (_req, res) => {
  const response = await client.hello.getOrCreate(["a"]).fetch("/");
  res.status(response.status).type(response.headers.get("content-type") ?? "text/plain").send(await response.text());
});
// Text stays text: ws hands the listener a Buffer, which it would otherwise send back as binary.
app.ws("/echo", (ws) => ws.on("message", (m, isBinary) => ws.send(m, { binary: isBinary })));
// The plain echo plus what the W3C surface forces on any onWebSocket path, and nothing else: text
// decoded to a string for a MessageEvent, dispatched through an EventTarget, sent back as a string.
app.ws("/w3c-floor", (ws) => {
  const target = new EventTarget();
  target.addEventListener("message", (e) => ws.send((e as MessageEvent).data));
  ws.on("message", (m: Buffer, isBinary) => {
    target.dispatchEvent(new MessageEvent("message", { data: isBinary ? m : m.toString("utf8") }));
  });
});
app.use("/registry", actorMiddleware(registry));

const server = app.listen(0, "127.0.0.1", () => {
  void sendToRunner({ type: "ready", port: (server.address() as AddressInfo).port });
});
// The runner divides the CPU time of a round by its requests: a cost that other load on the machine barely skews.
process.on("message", (m) => {
  if (m !== "cpu") return;
  const { user, system } = process.cpuUsage();
  void sendToRunner({ type: "cpu", micros: user + system });
});
// process.exit (not a signal) so that `--cpu-prof` still writes its profile.
process.on("disconnect", () => process.exit(0));
