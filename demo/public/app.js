// The demo page: plain JavaScript on the browser bundle of express-actors/client.
import { createClient } from "/client.js";

const client = createClient(new URL("/registry", location.href).href);
const $ = (selector) => document.querySelector(selector);

/** What the end-to-end tests read (and handy in the devtools console). */
const demo = (window.demo = { client, feedEvents: [], chatSocket: undefined });

// ---------------------------------------------------------------- errors

function showError(element, err) {
  element.textContent = describe(err);
  element.hidden = false;
}

function clearError(element) {
  element.hidden = true;
  element.textContent = "";
}

function describe(err) {
  if (err instanceof HttpError) return err.message;
  if (err instanceof TypeError && /fetch|network/i.test(err.message)) {
    return `Network error: ${err.message} (is the server running?)`;
  }
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** A router or actor error: the JSON body of the library's error table, or whatever the actor sent. */
class HttpError extends Error {
  constructor(response, body) {
    const detail = body && typeof body === "object" && body.code ? `${body.code}: ${body.message}` : String(body ?? "").slice(0, 200);
    super(`HTTP ${response.status} ${response.statusText}${detail ? ` — ${detail}` : ""}`);
    this.status = response.status;
    this.body = body;
  }
}

async function readBody(response) {
  const text = await response.text();
  if ((response.headers.get("content-type") ?? "").includes("json")) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

for (const kind of ["error", "unhandledrejection"]) {
  window.addEventListener(kind, (event) => showError($("#page-error"), event.reason ?? event.error ?? event.message));
}

const clock = (date) => new Date(date).toLocaleTimeString([], { hour12: false });

function setStatus(element, text, kind) {
  element.textContent = text;
  element.className = `status ${kind}`;
}

// ?key=… picks the counter's and the feed's key (a link to share, and what survives a reload).
const initialKey = new URLSearchParams(location.search).get("key");
if (initialKey) $("#counter-key").value = $("#feed-key").value = initialKey;

// ---------------------------------------------------------------- counter: handle.fetch, from two clients

const counterKey = () => $("#counter-key").value.trim() || "demo";

// RivetKit's own client (rivetkit 2.0.33, bundled by the demo server), against the same mount. Imported
// on demand so that the rest of the page does not wait for its 650 KB.
const rivetkitClient = import("/rivetkit-client.js").then(({ createClient }) => createClient(new URL("/registry", location.href).href));

/** The same code for both clients: `panel` is "counter" (express-actors/client) or "rivetkit". */
async function callCounter(panel, method, path) {
  const $panel = (name) => $(`#${panel}-${name}`);
  clearError($panel("error"));
  const key = counterKey();
  const started = performance.now();
  try {
    const counter = (panel === "rivetkit" ? await rivetkitClient : client).counter;
    const response = await counter.getOrCreate([key]).fetch(path, { method });
    const body = await readBody(response);
    $panel("status").textContent = `${method} ${path} → ${response.status} in ${Math.round(performance.now() - started)} ms (key "${key}")`;
    if (!response.ok) throw new HttpError(response, body);
    $panel("value").textContent = String(body.count);
  } catch (err) {
    $panel("status").textContent = `${method} ${path} failed (key "${key}")`;
    showError($panel("error"), err);
  }
}

$("#counter-form").addEventListener("submit", (event) => {
  event.preventDefault();
  void callCounter("counter", "POST", "/increment");
});
$("#counter-refresh").addEventListener("click", () => void callCounter("counter", "GET", "/count"));
$("#rivetkit-increment").addEventListener("click", () => void callCounter("rivetkit", "POST", "/increment"));
$("#rivetkit-refresh").addEventListener("click", () => void callCounter("rivetkit", "GET", "/count"));
for (const panel of ["counter", "rivetkit"]) {
  $("#counter-key").addEventListener("change", () => void callCounter(panel, "GET", "/count"));
  void callCounter(panel, "GET", "/count");
}

// ---------------------------------------------------------------- chat: handle.websocket

const CLOSE_MEANINGS = {
  1000: "closed normally",
  1001: "the server is shutting down",
  1006: "connection lost",
  1009: "message too big",
  1011: "server error",
  4400: "refused: bad request",
  4401: "refused: unauthorized",
  4403: "refused: forbidden",
  4404: "refused: not found",
};

$("#chat-name").value = localStorage.getItem("demo-chat-name") ?? `guest-${Math.floor(100 + Math.random() * 900)}`;

function addChatLine(parts, className) {
  const list = $("#chat-messages");
  const item = document.createElement("li");
  if (className) item.className = className;
  for (const [tag, text, cls] of parts) {
    const node = document.createElement(tag);
    if (tag === "time") node.dateTime = text.iso;
    node.textContent = tag === "time" ? text.label : text;
    if (cls) node.className = cls;
    item.append(node);
  }
  list.append(item);
  list.scrollTop = list.scrollHeight;
}

const timePart = (iso) => ["time", { iso, label: clock(iso) }];

function renderChatEvent(event) {
  switch (event.type) {
    case "history":
      $("#chat-messages").replaceChildren();
      if (event.messages.length === 0) addChatLine([["span", "No messages yet. Say hello!"]], "notice placeholder");
      for (const m of event.messages) addChatLine([timePart(m.time), ["span", m.from, "from"], ["span", m.text]], "message");
      $("#chat-online").textContent = `online: ${event.online.join(", ")}`;
      break;
    case "message":
      $("#chat-messages .placeholder")?.remove();
      addChatLine([timePart(event.time), ["span", event.from, "from"], ["span", event.text]], "message");
      break;
    case "join":
    case "leave":
      addChatLine([timePart(event.time), ["span", `${event.name} ${event.type === "join" ? "joined" : "left"}`]], "notice");
      $("#chat-online").textContent = event.online.length ? `online: ${event.online.join(", ")}` : "";
      break;
    case "error":
      addChatLine([["span", event.message]], "problem");
      break;
  }
}

function setChatConnected(connected) {
  $("#chat-text").disabled = !connected;
  $("#chat-send-button").disabled = !connected;
  $("#chat-leave").disabled = !demo.chatSocket;
}

async function joinChat(room, name) {
  leaveChat(true);
  clearError($("#chat-error"));
  $("#chat-messages").replaceChildren();
  $("#chat-online").textContent = "";
  setStatus($("#chat-status"), `connecting to "${room}"…`, "pending");
  let socket;
  try {
    // Resolves at once with a CONNECTING socket; a refusal arrives as a close code (4400, 4403, …).
    socket = await client.chat.getOrCreate([room], { params: { name } }).websocket();
  } catch (err) {
    setStatus($("#chat-status"), "could not connect", "bad");
    showError($("#chat-error"), err);
    return;
  }
  demo.chatSocket = socket;
  setChatConnected(false);
  socket.addEventListener("open", () => {
    if (demo.chatSocket !== socket) return;
    setStatus($("#chat-status"), `connected to "${room}" as ${name}`, "ok");
    setChatConnected(true);
    $("#chat-text").focus();
  });
  // Only the current socket updates the page: one being replaced may still close or talk.
  socket.addEventListener("message", (event) => {
    if (demo.chatSocket !== socket) return;
    try {
      renderChatEvent(JSON.parse(event.data));
    } catch (err) {
      showError($("#chat-error"), err);
    }
  });
  socket.addEventListener("close", (event) => {
    if (demo.chatSocket !== socket) return;
    const meaning = CLOSE_MEANINGS[event.code] ?? "closed";
    const text = `${meaning} — close code ${event.code}${event.reason ? `, reason "${event.reason}"` : ""}`;
    setStatus($("#chat-status"), `${event.code} ${event.reason || meaning}`, event.code === 1000 ? "idle" : "bad");
    if (event.code !== 1000) showError($("#chat-error"), `Room "${room}": ${text}`);
    else addChatLine([["span", "you left the room"]], "notice");
    demo.chatSocket = undefined;
    setChatConnected(false);
  });
}

/** Closes the current socket; with `quietly`, the page forgets it first (a new room replaces it). */
function leaveChat(quietly = false) {
  const socket = demo.chatSocket;
  if (!socket) return;
  if (quietly) demo.chatSocket = undefined;
  if (socket.readyState <= WebSocket.OPEN) socket.close(1000, "bye");
}

$("#chat-join").addEventListener("submit", (event) => {
  event.preventDefault();
  const room = $("#chat-room").value.trim();
  const name = $("#chat-name").value.trim();
  localStorage.setItem("demo-chat-name", name);
  void joinChat(room, name);
});
$("#chat-leave").addEventListener("click", () => leaveChat());
$("#chat-forbidden").addEventListener("click", () => void joinChat("staff", $("#chat-name").value.trim() || "guest"));
$("#chat-send").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("#chat-text");
  const socket = demo.chatSocket;
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    showError($("#chat-error"), "Not connected: join a room first.");
    return;
  }
  if (input.value.trim() === "") return;
  socket.send(input.value);
  input.value = "";
});

// ---------------------------------------------------------------- live feed: EventSource

let source;

function startFeed() {
  stopFeed();
  clearError($("#feed-error"));
  const key = $("#feed-key").value.trim() || "demo";
  const url = `/feed/${encodeURIComponent(key)}/events`;
  const list = $("#feed-events");
  list.replaceChildren();
  let opened;
  let previous;
  source = new EventSource(url);
  setStatus($("#feed-status"), `connecting to ${url}…`, "pending");
  $("#feed-start").disabled = true;
  $("#feed-stop").disabled = false;
  source.addEventListener("open", () => {
    opened = performance.now();
    setStatus($("#feed-status"), `streaming ${url}`, "ok");
    clearError($("#feed-error"));
  });
  source.addEventListener("message", (event) => {
    const arrivedAt = performance.now();
    const data = JSON.parse(event.data);
    demo.feedEvents.push({ arrivedAt, receivedAt: Date.now(), data });
    const item = document.createElement("li");
    const time = document.createElement("time");
    time.dateTime = data.time;
    time.textContent = clock(data.time);
    const delta = document.createElement("span");
    delta.className = "delta";
    delta.textContent = previous === undefined ? `first event, ${Math.round(arrivedAt - (opened ?? arrivedAt))} ms after open` : `+${Math.round(arrivedAt - previous)} ms`;
    previous = arrivedAt;
    item.append(time, `stream #${data.stream}: count = ${data.count}`, delta);
    item.dataset.arrivedAt = String(arrivedAt);
    list.prepend(item);
    while (list.children.length > 30) list.lastElementChild.remove();
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      setStatus($("#feed-status"), "closed", "bad");
      showError($("#feed-error"), `The stream ${url} was refused (not an event stream, or an HTTP error).`);
      $("#feed-start").disabled = false;
      $("#feed-stop").disabled = true;
    } else {
      setStatus($("#feed-status"), "connection lost, reconnecting…", "pending");
      showError($("#feed-error"), "The feed connection dropped; EventSource reconnects by itself.");
    }
  });
}

function stopFeed() {
  if (!source) return;
  source.close();
  source = undefined;
  setStatus($("#feed-status"), "stopped", "idle");
  $("#feed-start").disabled = false;
  $("#feed-stop").disabled = true;
}

$("#feed-form").addEventListener("submit", (event) => {
  event.preventDefault();
  startFeed();
});
$("#feed-stop").addEventListener("click", stopFeed);

// ---------------------------------------------------------------- raw router call: fetch + header

const RAW_PREFIX = "/registry/actors/raw/http";
const PRESETS = {
  count: { method: "GET", path: "/count", query: { getOrCreateForKey: { name: "counter", key: ["demo"] } } },
  increment: { method: "POST", path: "/increment", query: { getOrCreateForKey: { name: "counter", key: ["demo"] } } },
  forbidden: { method: "GET", path: "/items", query: { getOrCreateForKey: { name: "cart", key: ["42"] } } },
  missing: { method: "GET", path: "/count", query: { getForKey: { name: "counter", key: ["nobody-made-this"] } } },
  malformed: { method: "GET", path: "/count", query: '{"getOrCreateForKey":{"name":"counter"' },
};

function applyPreset(name) {
  const preset = PRESETS[name];
  $("#raw-method").value = preset.method;
  $("#raw-path").value = preset.path;
  $("#raw-query").value = typeof preset.query === "string" ? preset.query : JSON.stringify(preset.query);
  $("#raw-body").value = "";
}
$("#raw-preset").addEventListener("change", (event) => applyPreset(event.target.value));
applyPreset("count");

$("#raw-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError($("#raw-error"));
  const method = $("#raw-method").value;
  const path = "/" + $("#raw-path").value.trim().replace(/^\/+/, "");
  const query = $("#raw-query").value.trim();
  const body = method === "GET" ? undefined : $("#raw-body").value;
  const url = new URL(RAW_PREFIX + path, location.href);
  const headers = {};
  if (query) headers["X-RivetKit-Actor-Query"] = query;
  if (body) headers["Content-Type"] = "text/plain";

  const requestText = [`${method} ${url.pathname}${url.search} HTTP/1.1`, `Host: ${url.host}`]
    .concat(Object.entries(headers).map(([name, value]) => `${name}: ${value}`))
    .join("\n") + (body ? `\n\n${body}` : "");
  $("#raw-request").textContent = requestText;
  const responsePane = $("#raw-response");
  responsePane.textContent = "…";
  responsePane.classList.remove("bad");

  const started = performance.now();
  try {
    const response = await fetch(url, { method, headers, body });
    let text = await response.text();
    if ((response.headers.get("content-type") ?? "").includes("json")) {
      try {
        text = JSON.stringify(JSON.parse(text), null, 2);
      } catch {
        // shown as sent
      }
    }
    const lines = [`HTTP/1.1 ${response.status} ${response.statusText}   (${Math.round(performance.now() - started)} ms)`];
    response.headers.forEach((value, name) => lines.push(`${name}: ${value}`));
    responsePane.textContent = lines.join("\n") + "\n\n" + text;
    responsePane.classList.toggle("bad", !response.ok);
  } catch (err) {
    responsePane.textContent = `(no response)\n${describe(err)}`;
    responsePane.classList.add("bad");
    showError($("#raw-error"), err);
  }
});
