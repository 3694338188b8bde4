import net from "node:net";
import http from "node:http";

export interface RawResponse {
  status: number;
  statusText: string;
  /** Lower-cased names, in wire order, duplicates kept. */
  headers: [string, string][];
  body: Buffer;
}

export function header(res: RawResponse, name: string): string | undefined {
  return res.headers.find(([n]) => n === name)?.[1];
}

export function headerAll(res: RawResponse, name: string): string[] {
  return res.headers.filter(([n]) => n === name).map(([, v]) => v);
}

/**
 * A keep-alive HTTP/1.1 connection over node:net, for requests no HTTP client would send
 * (bad Host, absolute-form targets, GET with a body) and for checking connection reuse.
 */
export class RawConnection {
  readonly socket: net.Socket;
  private buffer = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.wake();
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
  }

  static open(url: string): Promise<RawConnection> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve, reject) => {
      const socket = net.connect(Number(port), hostname, () => resolve(new RawConnection(socket)));
      socket.once("error", reject);
    });
  }

  send(data: string | Buffer): void {
    this.socket.write(typeof data === "string" ? Buffer.from(data, "latin1") : data);
  }

  /** Reads the next response; `head` for a response to HEAD (headers only). */
  async read(opts: { head?: boolean } = {}): Promise<RawResponse> {
    const end = await this.until(() => this.buffer.indexOf("\r\n\r\n"));
    const lines = this.buffer.subarray(0, end).toString("latin1").split("\r\n");
    const [, status, ...text] = lines[0].split(" ");
    const headers = lines.slice(1).map((line): [string, string] => {
      const colon = line.indexOf(":");
      return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
    });
    this.buffer = this.buffer.subarray(end + 4);
    const res: RawResponse = { status: Number(status), statusText: text.join(" "), headers, body: Buffer.alloc(0) };
    const code = res.status;
    if (opts.head || code === 204 || code === 304 || (code >= 100 && code < 200)) return res;
    const length = header(res, "content-length");
    if (header(res, "transfer-encoding") === "chunked") res.body = await this.readChunked();
    else if (length !== undefined) res.body = await this.take(Number(length));
    else {
      await this.until(() => (this.closed ? this.buffer.length : -1));
      res.body = this.take0(this.buffer.length);
    }
    return res;
  }

  /** The next `n` bytes after the responses read so far (a WebSocket's frames after its 101). */
  bytes(n: number): Promise<Buffer> {
    return this.take(n);
  }

  /** Everything received and not yet parsed, as latin1 text. */
  get received(): string {
    return this.buffer.toString("latin1");
  }

  close(): void {
    this.socket.destroy();
  }

  private async readChunked(): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (;;) {
      const eol = await this.until(() => this.buffer.indexOf("\r\n"));
      const size = parseInt(this.buffer.subarray(0, eol).toString("latin1"), 16);
      this.buffer = this.buffer.subarray(eol + 2);
      if (size === 0) {
        await this.take(2);
        return Buffer.concat(parts);
      }
      parts.push(await this.take(size));
      await this.take(2);
    }
  }

  private async take(n: number): Promise<Buffer> {
    await this.until(() => (this.buffer.length >= n ? n : -1));
    return this.take0(n);
  }

  private take0(n: number): Buffer {
    const out = this.buffer.subarray(0, n);
    this.buffer = this.buffer.subarray(n);
    return out;
  }

  /** Waits until `probe` returns a non-negative number; rejects if the socket closes first. */
  private async until(probe: () => number): Promise<number> {
    for (;;) {
      const found = probe();
      if (found >= 0) return found;
      if (this.closed) throw new Error("connection closed before the response was complete");
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/** One request on a fresh connection: writes `data`, returns the first response. */
export async function rawRequest(url: string, data: string | Buffer, opts: { head?: boolean } = {}): Promise<RawResponse> {
  const conn = await RawConnection.open(url);
  try {
    conn.send(data);
    return await conn.read(opts);
  } finally {
    conn.close();
  }
}

/** Resolves once `socket` is closed, or rejects after `ms`. */
export function closedWithin(socket: net.Socket, ms: number): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socket still open after ${ms} ms`)), ms);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export interface TimedResponse {
  res: http.IncomingMessage;
  /** Each body chunk with the time (ms since the request was sent) it arrived. */
  chunks: { at: number; data: Buffer }[];
  /** Time the headers arrived. */
  headersAt: number;
  /** Resolves at the end of the body; rejects if the connection breaks first. */
  done: Promise<Buffer>;
}

/** A node:http request that records when the headers and each body chunk arrive. */
export function timedRequest(url: string, options: http.RequestOptions, body?: Buffer | string): Promise<TimedResponse> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(url, options, (res) => {
      const chunks: { at: number; data: Buffer }[] = [];
      const done = new Promise<Buffer>((ok, fail) => {
        res.on("data", (data: Buffer) => chunks.push({ at: performance.now() - started, data }));
        res.on("end", () => ok(Buffer.concat(chunks.map((c) => c.data))));
        res.on("error", fail);
        res.on("aborted", () => fail(new Error("aborted")));
      });
      done.catch(() => {});
      resolve({ res, chunks, headersAt: performance.now() - started, done });
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** Polls until `check` is true (for effects that land a little after a socket event). */
export async function eventually(check: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
