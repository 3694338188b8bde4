import { spawn, type ChildProcess } from "node:child_process";
import http from "node:http";
import net from "node:net";
import * as path from "node:path";
import { createInterface } from "node:readline";
import type { AddressInfo } from "node:net";
import { createClient } from "express-actors/client";
import { drainCap } from "../lib/http/too-large";

// An upload over maxBodySize must get its 413 from every kind of client, which means reading
// (and dropping) the rest of the body before closing, within bounds. The app runs in a child
// process: in one process the client's writes and the server's close never race.

const BIG = Buffer.alloc(20 * 1024 * 1024, 7); // over the default limit of 16 MiB
const SMALL_LIMIT = 1024; // the fixture's /small mount
const QUERY = JSON.stringify({ getOrCreateForKey: { name: "sink", key: ["a"] } });
const ATTEMPTS = 10;
const EXPECTED = Array(ATTEMPTS).fill("413 payload_too_large");

/** `n` uploads one after another, each summed up as "status code" or "rejected: cause". */
async function attempts(n: number, send: () => Promise<Response>): Promise<string[]> {
  const outcomes: string[] = [];
  for (let i = 0; i < n; i++) {
    try {
      const res = await send();
      const text = await res.text();
      let code = text;
      try {
        code = (JSON.parse(text) as { code: string }).code;
      } catch {
        // Not JSON (a proxy's own page): keep the text.
      }
      outcomes.push(`${res.status} ${code}`);
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      outcomes.push(`rejected: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
    }
  }
  return outcomes;
}

/** The body as a chunked upload: fetch cannot know the length of a ReadableStream. */
function streamOf(data: Buffer): ReadableStream<Uint8Array> {
  const step = 1024 * 1024;
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      controller.enqueue(data.subarray(offset, offset + step));
      offset += step;
      if (offset >= data.length) controller.close();
    },
  });
}

const post = (url: string, body: BodyInit, headers: Record<string, string> = {}) =>
  fetch(url, { method: "POST", headers, body, duplex: "half" } as RequestInit);

/** A reverse proxy that reads the whole request before passing it on, as nginx does by default. */
async function bufferingProxy(target: string) {
  const server = http.createServer(async (req, res) => {
    const parts: Buffer[] = [];
    for await (const part of req) parts.push(part as Buffer);
    const body = Buffer.concat(parts);
    const headers = { ...req.headers, "content-length": String(body.length) };
    delete headers["transfer-encoding"];
    const upstream = http.request(`${target}${req.url}`, { method: req.method, headers, agent: false }, (answer) => {
      res.writeHead(answer.statusCode!, answer.headers);
      answer.pipe(res);
    });
    upstream.on("error", () => {
      if (res.headersSent) res.destroy();
      else res.writeHead(502, { "content-type": "text/plain" }).end("bad gateway");
    });
    upstream.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

interface RawUpload {
  /** Body bytes handed to the socket before it closed. */
  sent: number;
  /** Everything the server sent back. */
  received: string;
  /** The socket error, if the connection ended with one (ECONNRESET, EPIPE). */
  error?: string;
}

/**
 * Sends `head`, then `body` (all at once) or, without one, 64 KiB after 64 KiB until the server
 * closes the connection or `maxBytes` went out. Resolves when the connection is closed.
 */
function rawUpload(url: string, head: string, opts: { body?: Buffer; maxBytes?: number; keepQuiet?: boolean }): Promise<RawUpload> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  const result: RawUpload = { sent: 0, received: "" };
  socket.on("data", (data: Buffer) => (result.received += data.toString("latin1")));
  socket.on("error", (err: NodeJS.ErrnoException) => (result.error ??= err.code ?? err.message));
  const closed = new Promise<RawUpload>((resolve) => socket.once("close", () => resolve(result)));
  socket.once("connect", async () => {
    socket.write(head);
    if (opts.body) {
      socket.write(opts.body);
      result.sent = opts.body.length;
      return;
    }
    if (opts.keepQuiet) return;
    const chunk = Buffer.alloc(64 * 1024, 120);
    while (!socket.destroyed && result.sent < (opts.maxBytes ?? Infinity)) {
      const flushed = socket.write(chunk);
      result.sent += chunk.length;
      if (!flushed) await new Promise<void>((resolve) => (socket.once("drain", resolve), socket.once("close", resolve)));
    }
    socket.destroy();
  });
  return closed;
}

const rawHead = (target: string, length: number) =>
  [`POST ${target} HTTP/1.1`, "Host: test", `X-RivetKit-Actor-Query: ${QUERY}`, `Content-Length: ${length}`, "", ""].join("\r\n");

/** The status and the JSON error code of the one response received, or why there is none. */
function answerOf({ received, error }: RawUpload): string {
  if (!received.includes("\r\n\r\n")) return `no response (${error ?? "closed"}): ${JSON.stringify(received)}`;
  const [head, body] = received.split("\r\n\r\n");
  const status = head.split(" ")[1];
  return `${status} ${(JSON.parse(body) as { code: string }).code}`;
}

describe.each(["5", "4"])("uploads over maxBodySize on Express %s", (version) => {
  let child: ChildProcess;
  let base: string;
  let stderr = "";

  beforeAll(async () => {
    child = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "fixtures", "upload-server.ts"), version], {
      cwd: path.join(__dirname, ".."),
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stderr!.on("data", (chunk) => (stderr += chunk));
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout! }).once("line", resolve);
      child.once("exit", (code) => reject(new Error(`the app exited with ${code}: ${stderr}`)));
    });
    base = `http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}`;
  }, 20_000);

  afterAll(() => {
    child.kill("SIGKILL");
  });

  const router = () => `${base}/registry/actors/raw/http/upload`;
  const routerHeaders = { "x-rivetkit-actor-query": QUERY };

  it("answers 413 to every fetch of 20 MB through the router, Content-Length and chunked", async () => {
    expect(await attempts(ATTEMPTS, () => post(router(), BIG, routerHeaders))).toEqual(EXPECTED);
    expect(await attempts(ATTEMPTS, () => post(router(), streamOf(BIG), routerHeaders))).toEqual(EXPECTED);
  }, 60_000);

  it("answers 413 to every fetch of 20 MB through forwardToActor, Content-Length and chunked", async () => {
    expect(await attempts(ATTEMPTS, () => post(`${base}/upload`, BIG))).toEqual(EXPECTED);
    expect(await attempts(ATTEMPTS, () => post(`${base}/upload`, streamOf(BIG)))).toEqual(EXPECTED);
  }, 60_000);

  it("answers 413 to every upload of 20 MB from createClient", async () => {
    const handle = createClient(`${base}/registry`).sink.getOrCreate(["a"]);
    expect(await attempts(ATTEMPTS, () => handle.fetch("/upload", { method: "POST", body: BIG }))).toEqual(EXPECTED);
  }, 60_000);

  it("answers 413, not 502, behind a proxy that buffers the request", async () => {
    const proxy = await bufferingProxy(base);
    try {
      expect(await attempts(ATTEMPTS, () => post(`${proxy.url}/registry/actors/raw/http/upload`, BIG, routerHeaders))).toEqual(EXPECTED);
      expect(await attempts(ATTEMPTS, () => post(`${proxy.url}/upload`, BIG))).toEqual(EXPECTED);
    } finally {
      await new Promise((resolve) => proxy.server.close(resolve));
    }
  }, 60_000);

  it("reads a refused body to its end within the cap, then closes cleanly", async () => {
    const body = Buffer.alloc(drainCap(SMALL_LIMIT) / 2, 121);
    const upload = await rawUpload(base, rawHead("/small/actors/raw/http/x", body.length), { body });
    expect(answerOf(upload)).toBe("413 payload_too_large");
    expect(upload.received).toMatch(/\r\nconnection: close\r\n/i);
    expect(upload.error).toBeUndefined();
  });

  it("cuts a client that keeps sending once the cap is drained", async () => {
    const upload = await rawUpload(base, rawHead("/small/actors/raw/http/x", 1e12), { maxBytes: 1024 * 1024 * 1024 });
    expect(answerOf(upload)).toBe("413 payload_too_large");
    expect(upload.sent).toBeGreaterThan(drainCap(SMALL_LIMIT));
    // Socket buffers on both sides hold a few MiB more; nothing near the gigabyte offered.
    expect(upload.sent).toBeLessThan(drainCap(SMALL_LIMIT) + 64 * 1024 * 1024);
  }, 30_000);

  it("cuts a client that stops sending after the idle time", async () => {
    const upload = await rawUpload(base, rawHead("/small/actors/raw/http/x", 1e9), { keepQuiet: true });
    expect(answerOf(upload)).toBe("413 payload_too_large");
  }, 30_000);

  it("keeps serving afterwards, with nothing logged as an error", async () => {
    const res = await post(router(), "fits", routerHeaders);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("4");
    expect(child.exitCode).toBeNull();
    expect(stderr).toBe("");
  });
});
