// The observability case: one process, one actor, mounted twice — once with no observability options
// (what every other row measures) and once with a pino logger, a prom-client registry and an
// OpenTelemetry tracer whose spans are exported (and dropped) in batches, as an app would run them.
import type { AddressInfo } from "node:net";
import { BasicTracerProvider, BatchSpanProcessor, type ReadableSpan, type SpanExporter } from "@opentelemetry/sdk-trace-base";
import express from "express";
import { actor, actorMiddleware, setup } from "express-actors";
import pino from "pino";
import { Registry } from "prom-client";
import { sendToRunner } from "./common";

const payload = { hello: "world", n: 1 };
const hello = () => actor({ onAuth: () => null, onFetch: () => Response.json(payload) });

const dropped: SpanExporter = {
  export: (_spans: ReadableSpan[], done) => done({ code: 0 }),
  shutdown: () => Promise.resolve(),
};
const tracer = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(dropped)] }).getTracer("bench");

const off = setup({ use: { hello: hello() } });
const on = setup({
  use: { hello: hello() },
  // Info lines go nowhere: the cost measured is the logger's, not a terminal's.
  logger: pino({ level: "info" }, pino.destination({ dest: "/dev/null", sync: false })),
  metrics: new Registry(),
  tracing: tracer,
});

const app = express();
app.use("/off", actorMiddleware(off));
app.use("/on", actorMiddleware(on));

const server = app.listen(0, "127.0.0.1", () => {
  void sendToRunner({ type: "ready", port: (server.address() as AddressInfo).port });
});
process.on("message", (m) => {
  if (m !== "cpu") return;
  const { user, system } = process.cpuUsage();
  void sendToRunner({ type: "cpu", micros: user + system });
});
process.on("disconnect", () => process.exit(0));
