// The load generators, run in the runner's process: autocannon for HTTP, ping-pong `ws` clients for echo.
import autocannon from "autocannon";
import WebSocket from "ws";
import { summarize, type Summary } from "./common";

export interface Timing {
  warmupS: number;
  durationS: number;
}

export interface Measured extends Summary {
  /** Requests or round trips per second. */
  rate: number;
}

/** GET `url` from 10 connections; latencies come from autocannon's per-response timing (sub-ms). */
export async function httpLoad(url: string, headers: Record<string, string>, timing: Timing): Promise<Measured> {
  const latencies: number[] = [];
  const instance = autocannon({
    url,
    headers,
    connections: 10,
    duration: timing.durationS,
    warmup: { duration: timing.warmupS },
  });
  instance.on("response", (_client, status, _bytes, ms) => {
    if (status < 300) latencies.push(ms);
  });
  const r = await instance;
  if (r.errors || r.timeouts || r.non2xx) {
    throw new Error(`${r.errors} errors, ${r.timeouts} timeouts, ${r.non2xx} non-2xx responses`);
  }
  return { rate: r.requests.average, ...summarize(latencies) };
}

const MESSAGE = "ping 0123456789";

/**
 * `sockets` clients, each sending one message and waiting for its echo before the next, for
 * warmup + duration. Only round trips sent and answered inside the measured window count.
 */
export async function wsLoad(url: string, protocols: string[], sockets: number, timing: Timing): Promise<Measured> {
  const clients: WebSocket[] = [];
  const rtts: number[] = [];
  try {
    const opened = [];
    for (let i = 0; i < sockets; i++) {
      const ws = new WebSocket(url, protocols);
      clients.push(ws);
      opened.push(
        new Promise<void>((resolve, reject) => {
          ws.once("open", resolve);
          ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
          ws.once("error", reject);
        }),
      );
    }
    await within(Promise.all(opened), 10_000, "opening the sockets");

    const start = process.hrtime.bigint();
    const measureFrom = start + BigInt(Math.round(timing.warmupS * 1e9));
    const end = measureFrom + BigInt(Math.round(timing.durationS * 1e9));
    const pingPong = (ws: WebSocket) =>
      new Promise<void>((resolve, reject) => {
        let sentAt = 0n;
        const send = () => {
          sentAt = process.hrtime.bigint();
          ws.send(MESSAGE);
        };
        ws.on("message", () => {
          const now = process.hrtime.bigint();
          if (now >= end) return resolve();
          if (sentAt >= measureFrom) rtts.push(Number(now - sentAt) / 1e6);
          send();
        });
        ws.once("close", (code) => reject(new Error(`the server closed a socket with ${code}`)));
        ws.once("error", reject);
        send();
      });
    await within(Promise.all(clients.map(pingPong)), (timing.warmupS + timing.durationS) * 1000 + 5000, "echo");
  } finally {
    for (const ws of clients) ws.terminate();
  }
  return { rate: rtts.length / timing.durationS, ...summarize(rtts) };
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
