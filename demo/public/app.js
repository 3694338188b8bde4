// The demo page: plain JavaScript on the browser bundle of express-actors/client.
import { createClient } from "/client.js";

const client = createClient(new URL("/registry", location.href).href);
const $ = (selector) => document.querySelector(selector);

/** What the end-to-end tests read (and handy in the devtools console). */
const demo = (window.demo = { client, feedEvents: [], chatSocket: undefined, chatStatuses: [], chatRejoins: 0 });

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
  1012: "the node is restarting",
  4400: "refused: bad request",
  4401: "refused: unauthorized",
  4403: "refused: forbidden",
  4404: "refused: not found",
};

// Closes worth another try with the same room and name: a node draining or gone (1012, reason
// service_restart, owner_unreachable, cluster_unavailable or lease_lost), a server going away (1001),
// a dropped connection (1006). A refusal (4400, 4403, …) would only be refused again.
const RECONNECT_CODES = new Set([1001, 1006, 1012]);
const RECONNECT_FIRST_MS = 250;
const RECONNECT_MAX_MS = 5000;

/**
 * The room the page is in or is getting back into: { room, name, socket, attempt, timer, lost, leaving }.
 * Undefined before a join, after a leave and after a close that is not retried.
 */
let chat;

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
const seconds = (ms) => `${Number((ms / 1000).toFixed(ms < 1000 ? 2 : 1))} s`;
const closeDetail = (event) => `${event.code}${event.reason ? ` ${event.reason}` : ""}`;

function renderChatEvent(event) {
  switch (event.type) {
    case "history":
      // The room's saved messages: the whole view, so a page that rejoins shows each message once.
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

function setChatStatus(text, kind) {
  setStatus($("#chat-status"), text, kind);
  demo.chatStatuses.push(text);
}

function setChatConnected(connected) {
  $("#chat-text").disabled = !connected;
  $("#chat-send-button").disabled = !connected;
  $("#chat-leave").disabled = !chat;
}

function joinChat(room, name) {
  forgetChat();
  clearError($("#chat-error"));
  $("#chat-messages").replaceChildren();
  $("#chat-online").textContent = "";
  chat = { room, name, attempt: 0 };
  void connectChat(chat, `connecting to "${room}"…`);
}

async function connectChat(session, status) {
  setChatStatus(status, "pending");
  setChatConnected(false);
  let socket;
  try {
    // Resolves at once with a CONNECTING socket; a refusal arrives as a close code (4400, 4403, …).
    socket = await client.chat.getOrCreate([session.room], { params: { name: session.name } }).websocket();
  } catch (err) {
    if (chat !== session) return;
    chat = undefined;
    setChatStatus("could not connect", "bad");
    setChatConnected(false);
    showError($("#chat-error"), err);
    return;
  }
  if (chat !== session) return socket.close(1000, "bye");
  session.socket = demo.chatSocket = socket;
  // Only the current socket updates the page: one being replaced may still close or talk.
  const current = () => chat === session && session.socket === socket;
  socket.addEventListener("message", (event) => {
    if (!current()) return;
    let data;
    try {
      data = JSON.parse(event.data);
    } catch (err) {
      showError($("#chat-error"), err);
      return;
    }
    renderChatEvent(data);
    // The actor's first frame: the room took this socket (a refused one opens, then closes).
    if (data.type === "history") inRoom(session);
  });
  socket.addEventListener("close", (event) => {
    if (!current()) return;
    session.socket = demo.chatSocket = undefined;
    if (!session.leaving && RECONNECT_CODES.has(event.code)) return reconnectLater(session, event);
    chat = undefined;
    setChatConnected(false);
    if (session.leaving) {
      setChatStatus(`left "${session.room}"`, "idle");
      addChatLine([["span", "you left the room"]], "notice");
      return;
    }
    const meaning = CLOSE_MEANINGS[event.code] ?? "closed";
    setChatStatus(`${event.code} ${event.reason || meaning}`, event.code === 1000 ? "idle" : "bad");
    showError($("#chat-error"), `Room "${session.room}": ${meaning} — close code ${event.code}${event.reason ? `, reason "${event.reason}"` : ""}`);
  });
}

function inRoom(session) {
  setChatStatus(`connected to "${session.room}" as ${session.name}`, "ok");
  setChatConnected(true);
  clearError($("#chat-error"));
  if (session.lost) {
    const away = seconds(performance.now() - session.lost.at);
    addChatLine([["span", `back in the room after ${away} (${session.lost.why}); the messages above are its saved history`]], "notice");
    demo.chatRejoins++;
  }
  if (!session.lost || document.activeElement === document.body) $("#chat-text").focus();
  session.attempt = 0;
  session.lost = undefined;
}

/** Another try after 250 ms, 0.5 s, 1 s … at most 5 s apart, until the room takes the socket again. */
function reconnectLater(session, event) {
  setChatConnected(false);
  const delay = Math.min(RECONNECT_FIRST_MS * 2 ** session.attempt, RECONNECT_MAX_MS);
  session.attempt++;
  if (!session.lost) {
    // The first close says why (a restart, a drop); the later ones only how the retries fare.
    session.lost = { at: performance.now(), meaning: CLOSE_MEANINGS[event.code], why: closeDetail(event) };
    addChatLine([["span", `${session.lost.meaning} (${session.lost.why}): reconnecting…`]], "notice");
    $("#chat-online").textContent = "";
  }
  const last = session.attempt > 1 ? `, last try: ${closeDetail(event)}` : "";
  setChatStatus(`${session.lost.meaning} — reconnecting in ${seconds(delay)} (${session.lost.why}${last})`, "pending");
  session.timer = setTimeout(() => {
    session.timer = undefined;
    void connectChat(session, `${session.lost.meaning} — reconnecting… (attempt ${session.attempt})`);
  }, delay);
}

/** Leaves the room: closes the socket, or stops waiting to reconnect. */
function leaveChat() {
  const session = chat;
  if (!session) return;
  session.leaving = true;
  clearTimeout(session.timer);
  if (session.socket) return session.socket.close(1000, "bye"); // its close event ends the session
  chat = undefined;
  setChatConnected(false);
  setChatStatus(`left "${session.room}"`, "idle");
  addChatLine([["span", "you left the room"]], "notice");
}

/** Drops the current room without a word on the page: a new join replaces it. */
function forgetChat() {
  const session = chat;
  if (!session) return;
  chat = undefined;
  demo.chatSocket = undefined;
  clearTimeout(session.timer);
  session.socket?.close(1000, "bye");
}

$("#chat-join").addEventListener("submit", (event) => {
  event.preventDefault();
  const room = $("#chat-room").value.trim();
  const name = $("#chat-name").value.trim();
  localStorage.setItem("demo-chat-name", name);
  joinChat(room, name);
});
$("#chat-leave").addEventListener("click", leaveChat);
$("#chat-forbidden").addEventListener("click", () => joinChat("staff", $("#chat-name").value.trim() || "guest"));
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
