import { randomBytes } from "node:crypto";
import { RawConnection, type RawResponse } from "./raw-http";

export interface RawFrame {
  opcode: number;
  payload: Buffer;
}

/**
 * A WebSocket client over node:net, for handshakes no WebSocket library sends (an absolute-form
 * request target). Text frames and close frames only.
 */
export class RawWebSocket {
  private constructor(
    readonly conn: RawConnection,
    readonly handshake: RawResponse,
  ) {}

  /** Sends the upgrade request `GET {target}` with `headers` and reads the response head. */
  static async open(url: string, target: string, headers: string[] = []): Promise<RawWebSocket> {
    const conn = await RawConnection.open(url);
    const head = [
      `GET ${target} HTTP/1.1`,
      `Host: ${new URL(url).host}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`,
      "Sec-WebSocket-Version: 13",
      ...headers,
      "",
      "",
    ];
    conn.send(head.join("\r\n"));
    return new RawWebSocket(conn, await conn.read());
  }

  /** One masked text frame, as a client must send it. */
  sendText(text: string) {
    const payload = Buffer.from(text, "utf8");
    const mask = randomBytes(4);
    const length = payload.length < 126 ? Buffer.from([0x80 | payload.length]) : Buffer.from([0x80 | 126, payload.length >> 8, payload.length & 0xff]);
    const masked = Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]));
    this.conn.send(Buffer.concat([Buffer.from([0x81]), length, mask, masked]));
  }

  async nextFrame(): Promise<RawFrame> {
    const [first, second] = await this.conn.bytes(2);
    let length = second & 0x7f;
    if (length === 126) length = (await this.conn.bytes(2)).readUInt16BE(0);
    else if (length === 127) length = Number((await this.conn.bytes(8)).readBigUInt64BE(0));
    return { opcode: first & 0x0f, payload: Buffer.from(await this.conn.bytes(length)) };
  }

  /** The next text message, or an error naming the close code and reason if the socket closes instead. */
  async nextText(): Promise<string> {
    const frame = await this.nextFrame();
    if (frame.opcode === 0x1) return frame.payload.toString("utf8");
    if (frame.opcode === 0x8) {
      const code = frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005;
      throw new Error(`closed with ${code} ${frame.payload.subarray(2).toString("utf8")}`);
    }
    throw new Error(`unexpected frame opcode ${frame.opcode}`);
  }

  close() {
    this.conn.close();
  }
}
