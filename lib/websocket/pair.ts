import type { Logger } from "../log";
import { driverOf, W3CWebSocket, type SocketDriver, type SocketTransport } from "./socket";

type Delivery = () => void;

/**
 * Two W3C sockets wired to each other in process, for the server-side client. Everything crosses
 * over asynchronously and in order, like a network would: the client opens on a later turn, sends
 * arrive on later turns, and a close reaches both ends.
 */
export function socketPair(url: string, protocol: string, logs: { client: Logger; server: { current: Logger } }) {
  const failed = (logger: Logger) => (err: unknown) => logger.error({ err }, "a WebSocket listener threw");
  const queue: Delivery[] = [];
  let scheduled = false;
  const deliver = (task: Delivery) => {
    queue.push(task);
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      for (let task = queue.shift(); task; task = queue.shift()) task();
    });
  };

  let closed = false;
  const ends: { client?: SocketDriver; server?: SocketDriver } = {};
  const transportTo = (peer: () => SocketDriver): SocketTransport => ({
    send(data, binary, done) {
      const copy = typeof data === "string" ? data : new Uint8Array(data);
      deliver(() => {
        peer().message(copy, binary);
        done();
      });
    },
    close(code, reason) {
      if (closed) return;
      closed = true;
      deliver(() => {
        ends.server!.closed(code ?? 1005, reason ?? "", true);
        ends.client!.closed(code ?? 1005, reason ?? "", true);
      });
    },
  });

  const client = new W3CWebSocket({ url, binaryType: "blob", transport: transportTo(() => ends.server!), onListenerError: failed(logs.client) });
  const server = new W3CWebSocket({
    url,
    binaryType: "arraybuffer",
    open: { protocol, extensions: "" },
    transport: transportTo(() => ends.client!),
    onListenerError: (err) => failed(logs.server.current)(err),
  });
  ends.client = driverOf(client);
  ends.server = driverOf(server);
  deliver(() => ends.client!.opened(protocol, ""));
  return { client, server, serverDriver: ends.server };
}
