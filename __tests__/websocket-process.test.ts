import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import { createInterface } from "node:readline";
import { actorProtocols, getOrCreate, within, WsClient } from "./helpers/ws-harness";

// SPEC §7 "a throwing listener or handler never crashes the process", checked in a child process
// whose own uncaughtException / unhandledRejection listeners must stay silent.

let child: ChildProcess;
let base: string;
let stderr = "";

beforeAll(async () => {
  child = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "helpers", "ws-crash-server.ts")], {
    cwd: path.join(__dirname, ".."),
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`child exited with ${code}: ${stderr}`)));
  });
  base = `127.0.0.1:${(JSON.parse(line) as { port: number }).port}`;
}, 15_000);

afterAll(() => {
  child.kill("SIGKILL");
});

let unique = 0;
function connect(pathname: string, params?: unknown) {
  const protocols = actorProtocols(getOrCreate("crashy", [`p${++unique}`]), { params });
  return new WsClient(`ws://${base}/registry/actors/raw/websocket${pathname}`, protocols);
}

async function closeOf(client: WsClient) {
  return within(client.closed, "close");
}

it("survives every failure path, closing only the socket concerned", async () => {
  const refused: Array<[WsClient, number, string]> = [
    [connect("/", { mode: "auth-throws" }), 1011, "internal_error"],
    [connect("/", { mode: "auth-rejects" }), 1011, "internal_error"],
    [connect("/throw"), 1011, "internal_error"],
    [connect("/reject"), 1011, "internal_error"],
  ];
  for (const [client, code, reason] of refused) expect(await closeOf(client)).toEqual({ code, reason });

  for (const pathname of ["/listener", "/async-listener", "/onmessage", "/handle-event"]) {
    const client = connect(pathname);
    await client.opened;
    client.send("trigger");
    expect(await closeOf(client)).toEqual({ code: 1011, reason: "internal_error" });
  }

  // Throwing close and error listeners run when the socket is gone: logged only.
  const vanishing = connect("/close-listener");
  await vanishing.opened;
  (vanishing.ws as unknown as { _socket: { destroy(): void } })._socket.destroy();
  const closing = connect("/close-listener");
  await closing.opened;
  closing.ws.close(4000);
  await closeOf(closing);

  const tooBig = connect("/");
  await tooBig.opened;
  tooBig.send(Buffer.alloc(4096));
  expect(await closeOf(tooBig)).toEqual({ code: 1009, reason: "message_too_big" });

  const badUtf8 = connect("/");
  await badUtf8.opened;
  badUtf8.ws.send(Buffer.from([0xff, 0xfe]), { binary: false });
  expect((await closeOf(badUtf8)).code).toBe(1007);

  const badState = connect("/bad-state");
  await badState.opened;
  badState.send("x");
  expect((await badState.received(1))[0].text).toBe("save failed");
  badState.ws.close();

  // Still serving, and nothing reached the process-level listeners.
  const echo = connect("/");
  await echo.opened;
  echo.send("still alive");
  expect((await echo.received(1))[0].text).toBe("still alive");
  echo.ws.close();
  await new Promise((resolve) => setTimeout(resolve, 200));
  const failures = await (await fetch(`http://${base}/failures`)).json();
  expect(failures).toEqual([]);
  expect(child.exitCode).toBeNull();
  expect(stderr).toContain("boom from the actor");
});
