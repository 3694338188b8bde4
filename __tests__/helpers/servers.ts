import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import express5 from "express";
import express4 from "express4";

/** Both Express majors, so every feature test can run against each. */
export const expressVersions = [
  { label: "express 5", express: express5 as unknown as typeof express5 },
  { label: "express 4", express: express4 as unknown as typeof express5 },
] as const;

export type ExpressFactory = typeof express5;

/** Starts `app` on 127.0.0.1 with a random port; returns its base URL and a closer. */
export async function listen(app: (req: any, res: any) => void): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const { createServer } = await import("node:http");
  const server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
