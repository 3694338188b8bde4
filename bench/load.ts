// The load generators, run in the runner's process: autocannon for HTTP, ping-pong `ws` clients for echo.
// Each call is one bounded round; run.ts interleaves rounds of the cases it compares.
import autocannon from "autocannon";
import WebSocket from "ws";

export interface Round {
  /** Requests or round trips per second. */
  rate: number;
  /** Per request or round trip, in ms. */
  latencies: number[];
}

/**
 * GET `url` from `connections` connections (10 by default) for `seconds`; latencies from autocannon's
 * per-response timing (sub-ms). `headers` may be a function of the connection's index.
 */
export async function httpRound(
  url: string,
  headers: Record<string, string> | ((connection: number) => Record<string, string>),
  seconds: number,
  connections = 10,
): Promise<Round> {
  const latencies: number[] = [];
  let made = 0;
  // A 100 ms sample interval, because autocannon only notices the end of the run at a sample.
  const instance = autocannon({
    url,
    connections,
    duration: seconds,
    sampleInt: 100,
    ...(typeof headers === "function" ? { setupClient: (client) => client.setHeaders(headers(made++)) } : { headers }),
  });
  instance.on("response", (_client, status, _bytes, ms) => {
    if (status < 300) latencies.push(ms);
  });
  const r = await instance;
  if (r.errors || r.timeouts || r.non2xx) {
    throw new Error(`${r.errors} errors, ${r.timeouts} timeouts, ${r.non2xx} non-2xx responses`);
  }
  return { rate: latencies.length / r.duration, latencies };
}

const MESSAGE = "ping 0123456789";

/**
 * `sockets` clients, each sending one message and waiting for its echo before the next, for
 * `seconds` after all of them are open. Only round trips answered inside that time count.
 */
export async function wsRound(url: string, protocols: string[], sockets: number, seconds: number): Promise<Round> {
  const clients: WebSocket[] = [];
  const latencies: number[] = [];
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

    const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
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
          latencies.push(Number(now - sentAt) / 1e6);
          send();
        });
        ws.once("close", (code) => reject(new Error(`the server closed a socket with ${code}`)));
        ws.once("error", reject);
        send();
      });
    await within(Promise.all(clients.map(pingPong)), seconds * 1000 + 5000, "echo");
  } finally {
    for (const ws of clients) ws.terminate();
  }
  return { rate: latencies.length / seconds, latencies };
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
