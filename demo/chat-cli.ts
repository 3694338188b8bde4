// A terminal chat client for the demo's `chat` actor:
//   npm run chat -- <room> <name>
// Lines typed on stdin are sent; every message of the room is printed. Ctrl-D (end of input) or
// Ctrl-C leaves. DEMO_URL (default http://localhost:$PORT, PORT default 3000) picks the server.
import * as readline from "node:readline";
import { createClient } from "express-actors/client";
import type { ChatEvent } from "./actors";
import type { DemoRegistry } from "./server"; // type only: no server code runs here

const CLOSE_CODES: Record<number, string> = {
  1000: "closed",
  1001: "the server is shutting down",
  1006: "connection lost",
  1009: "message too big",
  1011: "server error",
  4400: "refused: bad request",
  4403: "refused: forbidden",
  4404: "refused: not found",
};

async function main() {
  const [room, name] = process.argv.slice(2);
  if (!room || !name) {
    console.error("usage: npm run chat -- <room> <name>    (DEMO_URL=http://host:port picks the server)");
    process.exit(2);
  }
  const base = (process.env.DEMO_URL ?? `http://localhost:${process.env.PORT ?? 3000}`).replace(/\/+$/, "");
  const client = createClient<DemoRegistry>(`${base}/registry`);

  const tty = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  const rl = readline.createInterface({ input: process.stdin, output: tty ? process.stdout : undefined, terminal: tty });
  rl.setPrompt(`${name}> `);
  let finished = false;
  /** Prints above the prompt line without mangling what is being typed. */
  const print = (line: string) => {
    if (tty) {
      readline.clearLine(process.stdout, 0);
      readline.cursorTo(process.stdout, 0);
    }
    console.log(line);
    if (tty && !finished) rl.prompt(true);
  };

  // Input is read from the start (a pipe may deliver everything at once): lines wait until the socket opens.
  const queued: string[] = [];
  let inputEnded = false;
  let ws: WebSocket | undefined;
  rl.on("line", (line) => {
    if (line.trim() === "") return;
    if (ws && ws.readyState === ws.OPEN) ws.send(line);
    else queued.push(line);
    if (tty) rl.prompt();
  });
  // End of input (Ctrl-D, or the end of a pipe): leave the room once everything typed is sent.
  rl.on("close", () => {
    inputEnded = true;
    if (ws && ws.readyState === ws.OPEN) ws.close(1000, "bye");
  });
  process.on("SIGINT", () => (ws ? ws.close(1000, "bye") : process.exit(130)));

  ws = await client.chat.getOrCreate([room], { params: { name } }).websocket();
  const socket = ws;
  let seenOwnJoin = false;

  let opened = false;
  socket.addEventListener("open", () => {
    opened = true;
    // A refused socket opens too, then closes with 4400/4403/…: "joined" waits for the history.
    for (const line of queued.splice(0)) socket.send(line);
    if (inputEnded) socket.close(1000, "bye");
  });
  socket.addEventListener("message", (event) => {
    let data: ChatEvent;
    try {
      data = JSON.parse(String(event.data)) as ChatEvent;
    } catch {
      print(`? ${String(event.data)}`);
      return;
    }
    switch (data.type) {
      case "history":
        print(`* joined room "${room}" on ${base} as ${name}; type a line and press Enter (Ctrl-D leaves)`);
        if (data.messages.length > 0) print(`* last ${data.messages.length} messages:`);
        for (const m of data.messages) print(`[${clock(m.time)}] ${m.from}: ${m.text}`);
        print(`* online: ${data.online.join(", ")}`);
        break;
      case "message":
        print(`[${clock(data.time)}] ${data.from}: ${data.text}`);
        break;
      case "join":
      case "leave":
        if (data.type === "join" && data.name === name && !seenOwnJoin) {
          seenOwnJoin = true; // our own arrival: already said above
          break;
        }
        print(`* ${data.name} ${data.type === "join" ? "joined" : "left"} (online: ${data.online.join(", ") || "nobody"})`);
        break;
      case "error":
        print(`! ${data.message}`);
        break;
    }
  });
  socket.addEventListener("close", (event) => {
    finished = true;
    const what = opened ? (CLOSE_CODES[event.code] ?? "closed") : `could not reach ${base}`;
    print(`* ${what}: ${event.code}${event.reason ? " " + event.reason : ""}`);
    rl.close();
    process.exit(event.code === 1000 || event.code === 1005 ? 0 : 1);
  });

  if (tty) rl.prompt();
}

function clock(iso: string): string {
  return new Date(iso).toLocaleTimeString([], { hour12: false });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
