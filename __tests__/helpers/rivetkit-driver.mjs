// Drives RivetKit's own client (`rivetkit/client`) in a process of its own, as a user's app would
// run it: the package is ESM-first and needs Node's own module loader, which Jest's is not.
// Started by rivetkit-client.ts with fork(): argv = [package, endpoint]; commands arrive over IPC.
import { readFileSync } from "node:fs";

const [pkg, endpoint] = process.argv.slice(2);
const mod = await import(`${pkg}/client`);
const clientUrl = import.meta.resolve(`${pkg}/client`);
const packageJson = new URL(clientUrl.slice(0, clientUrl.indexOf(`/node_modules/${pkg}/`) + `/node_modules/${pkg}/`.length) + "package.json");
const version = JSON.parse(readFileSync(packageJson, "utf8")).version;
const client = mod.createClient(endpoint);
// 2.1+ renamed the raw socket method to webSocket; there `websocket` is an action proxy.
const socketMethod = "webSocket" in mod.ActorHandleRaw.prototype ? "webSocket" : "websocket";

const handles = new Map();
const streams = new Map();
const sockets = new Map();
let nextId = 0;

function errorOf(err) {
  return {
    name: err?.constructor?.name,
    group: err?.group,
    code: err?.code,
    message: String(err?.message ?? err),
    metadata: err?.metadata,
    isClientActorError: err instanceof mod.ActorError,
  };
}

function bytesOf(body) {
  if (body === undefined || typeof body === "string") return body;
  return Buffer.from(body.base64, "base64");
}

async function dataOf(data) {
  if (typeof data === "string") return { text: data };
  if (data instanceof Blob) data = await data.arrayBuffer();
  return { base64: Buffer.from(data instanceof ArrayBuffer ? new Uint8Array(data) : data).toString("base64") };
}

const ops = {
  version: () => ({ version, socketMethod }),

  handle: async ({ ref, how, name, key, actorId, opts }) => {
    const accessor = client[name];
    handles.set(
      ref,
      how === "getForId" ? accessor.getForId(actorId, opts) : how === "create" ? await accessor.create(key, opts) : accessor[how](key, opts),
    );
  },

  resolve: ({ ref }) => handles.get(ref).resolve(),

  fetch: async ({ ref, input, init = {}, read = "text" }) => {
    const response = await handles.get(ref).fetch(input, { ...init, body: bytesOf(init.body) });
    const head = { status: response.status, statusText: response.statusText, headers: [...response.headers] };
    if (read === "stream") {
      const stream = ++nextId;
      streams.set(stream, response.body.getReader());
      return { ...head, stream };
    }
    const bytes = Buffer.from(await response.arrayBuffer());
    return { ...head, body: read === "base64" ? bytes.toString("base64") : bytes.toString("utf8") };
  },

  read: async ({ stream }) => {
    const { done, value } = await streams.get(stream).read();
    return done ? { done } : { done, text: Buffer.from(value).toString("utf8") };
  },

  cancel: ({ stream }) => streams.get(stream).cancel(),

  ws: async ({ ref, path, protocols }) => {
    const ws = await handles.get(ref)[socketMethod](path, protocols);
    const sock = ++nextId;
    sockets.set(sock, ws);
    const emit = (type, extra) => process.send({ event: "ws", sock, type, ...extra });
    ws.addEventListener("open", () => emit("open", { protocol: ws.protocol }));
    ws.addEventListener("message", (event) => void dataOf(event.data).then((data) => emit("message", data)));
    ws.addEventListener("close", (event) => emit("close", { code: event.code, reason: event.reason }));
    ws.addEventListener("error", () => emit("error", {}));
    return { sock, readyState: ws.readyState };
  },

  action: ({ ref, action, args }) => handles.get(ref)[action](...args),

  /** An action over `handle.connect()`; the connection is disposed afterwards. */
  connAction: async ({ ref, action, args }) => {
    const conn = handles.get(ref).connect();
    try {
      return await conn[action](...args);
    } finally {
      void conn.dispose().catch(() => {});
    }
  },

  send: ({ sock, text, base64 }) => {
    sockets.get(sock).send(text ?? Buffer.from(base64, "base64"));
  },

  close: ({ sock, code, reason }) => {
    sockets.get(sock).close(code, reason);
  },
};

process.on("message", async ({ id, op, ...args }) => {
  try {
    process.send({ id, ok: true, value: await ops[op](args) });
  } catch (err) {
    process.send({ id, ok: false, error: errorOf(err) });
  }
});
process.send({ ready: true });
