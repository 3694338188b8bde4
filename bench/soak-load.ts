// The clients of the soak, in child processes of bench/soak.ts so that the measured server holds
// only its own file descriptors. Usage: soak-load.ts <server port>.
import * as net from "node:net";
import WebSocket from "ws";
import { serveCalls } from "./soak-ipc";

const port = Number(process.argv[2]);
const RAW = "/registry/actors/raw";
const HTTP = `http://127.0.0.1:${port}${RAW}/http`;
const WS = `ws://127.0.0.1:${port}${RAW}/websocket/`;

const queryOf = (name: string, key: string) => JSON.stringify({ getOrCreateForKey: { name, key: [key] } });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Counts failures and keeps the first few messages for the report. */
class Failures {
  count = 0;
  readonly first: string[] = [];
  note(what: string, err: unknown) {
    this.count++;
    const cause = err instanceof Error ? `${err.message}${err.cause ? ` (${String((err.cause as Error).message ?? err.cause)})` : ""}` : String(err);
    if (this.first.length < 10) this.first.push(`${what}: ${cause}`);
  }
}

/** The highest count the server acknowledged per key: each must be in the store at the end. */
class Acks {
  readonly byKey: Record<string, number> = {};
  total = 0;
  add(key: string, count: number) {
    if (!Number.isSafeInteger(count)) throw new Error(`not a count: ${count}`);
    this.total++;
    if (!(this.byKey[key] >= count)) this.byKey[key] = count;
  }
}

function openSocket(query: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(WS, { headers: { "X-RivetKit-Actor-Query": query }, perMessageDeflate: false });
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
    ws.once("close", (code, reason) => reject(new Error(`closed with ${code} ${reason} before opening`)));
  });
}

/**
 * Opens a socket and resolves with the first message too. The listener goes on before `open`: a
 * greeting sent at once can arrive with the handshake and be emitted in the same turn as `open`.
 */
function openWithGreeting(query: string): Promise<{ ws: WebSocket; greeting: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(WS, { headers: { "X-RivetKit-Actor-Query": query }, perMessageDeflate: false });
    ws.once("message", (data) => resolve({ ws, greeting: String(data) }));
    ws.once("error", reject);
    ws.once("close", (code, reason) => reject(new Error(`closed with ${code} ${reason} before its first message`)));
  });
}

/** The socket's next message as text; rejects if it closes first. */
function nextMessage(ws: WebSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    const onMessage = (data: WebSocket.RawData) => {
      ws.off("close", onClose);
      resolve(String(data));
    };
    const onClose = (code: number, reason: Buffer) => {
      ws.off("message", onMessage);
      reject(new Error(`closed with ${code} ${reason} while waiting for a message`));
    };
    ws.once("message", onMessage);
    ws.once("close", onClose);
  });
}

/** Closes with 1000 and resolves whether the closing handshake completed both ways. */
function closeCleanly(ws: WebSocket, timeoutMs = 30_000): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      ws.terminate();
      resolve(false);
    }, timeoutMs);
    ws.addEventListener("close", (event) => {
      clearTimeout(timer);
      resolve(event.code === 1000 && event.wasClean);
    }, { once: true });
    ws.close(1000);
  });
}

// --- Phase 1: many idle sockets held open ----------------------------------------------------------

const held: WebSocket[] = [];

async function openHeld(room: string): Promise<WebSocket> {
  const { ws, greeting } = await openWithGreeting(queryOf("hold", room));
  if (greeting !== "ready") throw new Error(`expected "ready", got ${JSON.stringify(greeting)}`);
  return ws;
}

async function openSockets(arg: { count: number; batch: number; rooms: number; offset: number }) {
  const failures = new Failures();
  const already = held.length;
  for (let i = 0; i < arg.count; i += arg.batch) {
    const batch = [];
    for (let k = i; k < Math.min(arg.count, i + arg.batch); k++) batch.push(openHeld(`room-${(arg.offset + k) % arg.rooms}`));
    for (const outcome of await Promise.allSettled(batch)) {
      if (outcome.status === "fulfilled") held.push(outcome.value);
      else failures.note("open", outcome.reason);
    }
  }
  return { opened: held.length - already, failed: failures.count, errors: failures.first };
}

/** Every held socket at once: ping, expect pong. */
async function pingAll() {
  const failures = new Failures();
  const outcomes = await Promise.allSettled(
    held.map(async (ws) => {
      const reply = nextMessage(ws);
      ws.send("ping");
      if ((await reply) !== "pong") throw new Error("no pong");
    }),
  );
  for (const outcome of outcomes) if (outcome.status === "rejected") failures.note("ping", outcome.reason);
  return { ok: outcomes.length - failures.count, failed: failures.count, errors: failures.first };
}

async function closeAll(arg: { batch: number }) {
  let clean = 0;
  for (let i = 0; i < held.length; i += arg.batch) {
    for (const ok of await Promise.all(held.slice(i, i + arg.batch).map((ws) => closeCleanly(ws)))) if (ok) clean++;
  }
  const total = held.length;
  held.length = 0;
  return { closed: total, clean };
}

// --- Phase 2: slowloris ------------------------------------------------------------------------------

interface Slow {
  kind: "headers" | "body";
  socket: net.Socket;
  /** Bytes still to trickle (headers); a body sends "x" until it is cut. */
  rest: Buffer;
  openedAt: number;
  closedAt?: number;
  response: string;
  error?: string;
}

function connectSlow(kind: Slow["kind"], key: string): Promise<Slow> {
  const query = queryOf("counter", key);
  const head =
    kind === "headers"
      ? // Longer than any trickle can send before headersTimeout, shorter than Node's 16 KiB header limit.
        `GET ${RAW}/http/count HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-RivetKit-Actor-Query: ${query}\r\nX-Padding: ${"a".repeat(8000)}\r\n\r\n`
      : `POST ${RAW}/http/upload HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-RivetKit-Actor-Query: ${query}\r\n` +
        `Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n`;
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const slow: Slow = { kind, socket, rest: Buffer.alloc(0), openedAt: 0, response: "" };
    socket.once("error", reject);
    socket.once("connect", () => {
      socket.off("error", reject);
      slow.openedAt = Date.now();
      socket.on("data", (chunk) => {
        if (slow.response.length < 200) slow.response += chunk.toString("latin1");
      });
      socket.on("error", (err) => (slow.error = err.message));
      socket.on("close", () => (slow.closedAt = Date.now()));
      // Headers: one byte now, one per tick. Body: the whole head now, then one byte per tick.
      const buffer = Buffer.from(head, "latin1");
      const now = kind === "headers" ? 1 : buffer.length;
      socket.write(buffer.subarray(0, now));
      slow.rest = buffer.subarray(now);
      resolve(slow);
    });
  });
}

function trickle(slow: Slow) {
  if (slow.closedAt !== undefined || !slow.socket.writable) return;
  if (slow.kind === "body") {
    slow.socket.write("x");
  } else if (slow.rest.length > 0) {
    slow.socket.write(slow.rest.subarray(0, 1));
    slow.rest = slow.rest.subarray(1);
  }
}

function summarizeSlow(list: Slow[], deadline: number) {
  const lifetimes = list.filter((s) => s.closedAt !== undefined).map((s) => s.closedAt! - s.openedAt);
  return {
    connections: list.length,
    answered408: list.filter((s) => s.response.startsWith("HTTP/1.1 408")).length,
    otherAnswers: [...new Set(list.filter((s) => s.response && !s.response.startsWith("HTTP/1.1 408")).map((s) => s.response.split("\r\n")[0]))],
    closedByServer: list.filter((s) => s.closedAt !== undefined && s.closedAt <= deadline).length,
    openAtDeadline: list.filter((s) => s.closedAt === undefined).length,
    lifetimeMinMs: lifetimes.length ? Math.min(...lifetimes) : null,
    lifetimeMaxMs: lifetimes.length ? Math.max(...lifetimes) : null,
  };
}

/** One normal write over HTTP, one over a WebSocket session; throws on anything but success. */
async function probe(key: string, acks: Acks) {
  const response = await fetch(`${HTTP}/inc`, { method: "POST", headers: { "X-RivetKit-Actor-Query": queryOf("counter", key) } });
  if (response.status !== 200) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  acks.add(key, ((await response.json()) as { count: number }).count);
  const ws = await openSocket(queryOf("counter", key));
  const reply = nextMessage(ws);
  ws.send("inc");
  acks.add(key, Number(await reply));
  if (!(await closeCleanly(ws))) throw new Error("the probe's socket did not close cleanly");
}

/**
 * Opens slow connections (headers trickled one byte per tick, or complete headers and a body
 * trickled), then runs normal writes on the same actors until the server has cut every slow one.
 */
async function slowloris(arg: { headers: number; bodies: number; keys: string[]; byteMs: number; probes: number; deadlineMs: number }) {
  const connecting: Array<Promise<Slow>> = [];
  for (let i = 0; i < arg.headers; i++) connecting.push(connectSlow("headers", arg.keys[i % arg.keys.length]));
  for (let i = 0; i < arg.bodies; i++) connecting.push(connectSlow("body", arg.keys[i % arg.keys.length]));
  const slow = await Promise.all(connecting);
  const ticker = setInterval(() => slow.forEach(trickle), arg.byteMs);
  const deadline = Date.now() + arg.deadlineMs;
  const allOpen = () => slow.every((s) => s.closedAt === undefined);
  const anyOpen = () => slow.some((s) => s.closedAt === undefined);

  const acks = new Acks();
  const failures = new Failures();
  let ok = 0;
  let okWhileAllOpen = 0;
  const loops = Array.from({ length: arg.probes }, async (_, worker) => {
    for (let i = worker; anyOpen() && Date.now() < deadline; i += arg.probes) {
      const allOpenBefore = allOpen();
      try {
        await probe(arg.keys[i % arg.keys.length], acks);
        ok++;
        // Counted only when no slow connection was cut during the probe: proof they did not block it.
        if (allOpenBefore && allOpen()) okWhileAllOpen++;
      } catch (err) {
        failures.note("probe", err);
        await sleep(20);
      }
    }
  });
  await Promise.all(loops);
  clearInterval(ticker);
  const result = {
    headers: summarizeSlow(slow.filter((s) => s.kind === "headers"), deadline),
    bodies: summarizeSlow(slow.filter((s) => s.kind === "body"), deadline),
    probes: { ok, failed: failures.count, okWhileAllOpen, errors: failures.first },
    acknowledged: acks.total,
    acked: acks.byKey,
  };
  for (const s of slow) s.socket.destroy();
  return result;
}

// --- Phase 3: mixed traffic ----------------------------------------------------------------------------

async function httpWrite(key: string, acks: Acks) {
  const response = await fetch(`${HTTP}/inc`, { method: "POST", headers: { "X-RivetKit-Actor-Query": queryOf("counter", key) } });
  if (response.status !== 200) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  acks.add(key, ((await response.json()) as { count: number }).count);
}

/** Opens an SSE stream, reads `events` events, and leaves (the server's stream must be cancelled). */
async function sseSession(key: string, events: number): Promise<number> {
  const abort = new AbortController();
  try {
    const response = await fetch(`${HTTP}/events`, { headers: { "X-RivetKit-Actor-Query": queryOf("counter", key) }, signal: abort.signal });
    if (response.status !== 200) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
    if (!response.headers.get("content-type")?.startsWith("text/event-stream")) throw new Error("not an event stream");
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    let seen = 0;
    while (seen < events) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended after ${seen} events`);
      text += decoder.decode(value, { stream: true });
      seen = text.split("\n\n").length - 1;
    }
    return seen;
  } finally {
    abort.abort();
  }
}

async function wsSession(key: string, messages: number, acks: Acks) {
  const ws = await openSocket(queryOf("counter", key));
  try {
    for (let i = 0; i < messages; i++) {
      const reply = nextMessage(ws);
      ws.send("inc");
      acks.add(key, Number(await reply));
    }
  } catch (err) {
    ws.terminate();
    throw err;
  }
  if (!(await closeCleanly(ws))) throw new Error("the session did not close cleanly");
}

interface MixedArg {
  seconds: number;
  keys: number;
  http: number;
  sse: number;
  ws: number;
  /** First write once to every key, so that every actor exists before the measured part. */
  sweep: boolean;
}

async function mixed(arg: MixedArg) {
  const keys = Array.from({ length: arg.keys }, (_, i) => `k${i}`);
  const pick = () => keys[Math.floor(Math.random() * keys.length)];
  const acks = new Acks();
  const counts = { http: { ok: 0 }, sse: { ok: 0, events: 0 }, ws: { ok: 0, messages: 0 } };
  const failures = { http: new Failures(), sse: new Failures(), ws: new Failures() };

  async function worker(kind: "http" | "sse" | "ws", until: () => boolean, next: () => string | undefined) {
    for (let key = next(); key !== undefined && !until(); key = next()) {
      try {
        if (kind === "http") {
          await httpWrite(key, acks);
          counts.http.ok++;
        } else if (kind === "sse") {
          const events = await sseSession(key, 2 + Math.floor(Math.random() * 4));
          counts.sse.events += events;
          counts.sse.ok++;
        } else {
          const messages = 1 + Math.floor(Math.random() * 3);
          await wsSession(key, messages, acks);
          counts.ws.ok++;
          counts.ws.messages += messages;
        }
      } catch (err) {
        failures[kind].note(kind, err);
        // Keeps a dead server from turning the loop into a busy spin.
        await sleep(20);
      }
    }
  }

  if (arg.sweep) {
    let i = 0;
    const next = () => (i < keys.length ? keys[i++] : undefined);
    await Promise.all(Array.from({ length: arg.http }, () => worker("http", () => false, next)));
  }
  const end = Date.now() + arg.seconds * 1000;
  const over = () => Date.now() >= end;
  await Promise.all([
    ...Array.from({ length: arg.http }, () => worker("http", over, pick)),
    ...Array.from({ length: arg.sse }, () => worker("sse", over, pick)),
    ...Array.from({ length: arg.ws }, () => worker("ws", over, pick)),
  ]);
  return {
    http: { ...counts.http, failed: failures.http.count },
    sse: { ...counts.sse, failed: failures.sse.count },
    ws: { ...counts.ws, failed: failures.ws.count },
    errors: [...failures.http.first, ...failures.sse.first, ...failures.ws.first],
    acknowledged: acks.total,
    acked: acks.byKey,
  };
}

const api = {
  openSockets,
  pingAll: async () => pingAll(),
  closeAll,
  slowloris,
  mixed,
};
export type LoadApi = typeof api;
export type MixedResult = Awaited<ReturnType<typeof mixed>>;
export type SlowlorisResult = Awaited<ReturnType<typeof slowloris>>;

serveCalls(api);
