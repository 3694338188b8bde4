import type { ServerResponse } from "node:http";
import type { RegistryCore } from "../registry/core";
import { sendJson } from "./json";

/**
 * `GET {mount}/metadata`: RivetKit's client awaits it before any other call (and retries it
 * forever when it fails). No `clientEndpoint`, so the client keeps the URL it was given. Only
 * actors with onAuth are listed: the others are private (SPEC §4) and not even named.
 */
export function sendMetadata(core: RegistryCore, res: ServerResponse) {
  const actorNames: Record<string, { metadata: object }> = {};
  for (const [name, definition] of Object.entries(core.definitions)) {
    if (definition.config.onAuth) actorNames[name] = { metadata: {} };
  }
  sendJson(res, 200, { runtime: "express-actors", runner: { kind: { normal: {} } }, actorNames });
}
