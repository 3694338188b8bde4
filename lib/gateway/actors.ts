import type { IncomingMessage, ServerResponse } from "node:http";
import { ActorError, errors, UserError } from "../errors";
import { actorUrl, originOf } from "../http/request";
import { sendError } from "../http/response";
import { splitHeaders } from "../http/serve";
import type { RegistryCore } from "../registry/core";
import { parseQuery, type KeyLimits, type ParsedQuery } from "../registry/query";
import type { ActorMeta } from "../stores/types";
import { readJsonObject, REFUSED } from "./body";
import { dropInternalHeaders } from "./headers";
import { decodeInput } from "./input";
import { parseSerializedKey, serializeKey } from "./key";
import { sendJson } from "./json";

/** How many ids one `GET /actors?actor_ids=` may ask for. */
const MAX_IDS = 32;

/**
 * RivetKit's manager API (SPEC §10): `PUT /actors` get-or-create, `POST /actors` create,
 * `GET /actors?name=&key=` get and `GET /actors?actor_ids=` by id. Each runs the actor's
 * onAuth (source "gateway", intents get and/or create) before anything is looked up or created,
 * except by id, where the id must be looked up to know whose onAuth to run.
 */
export async function serveActors(
  core: RegistryCore,
  req: IncomingMessage,
  res: ServerResponse,
  search: string,
  maxBodySize: number,
  limits: KeyLimits,
) {
  try {
    const { headers } = splitHeaders(req);
    dropInternalHeaders(headers);
    const url = actorUrl(originOf(req), "/");
    const request = () => new Request(url, { method: req.method, headers });
    if (req.method === "GET") {
      sendJson(res, 200, { actors: await getActors(core, new URLSearchParams(search), request, limits) });
      return;
    }
    const body = await readJsonObject(req, res, url, maxBodySize);
    if (body === REFUSED) return;
    const query = bodyQuery(body, req.method === "PUT" ? "getOrCreateForKey" : "create", limits);
    const { meta, created } = await core.locate(query, { request: request(), params: undefined, intent: undefined, authBy: "gateway" });
    sendJson(res, 200, req.method === "PUT" ? { actor: actorJson(meta), created } : { actor: actorJson(meta) });
  } catch (err) {
    sendError(res, err);
  }
}

/** `{ name, key: "<serialized>", input?: "<base64 CBOR>" }`; the client's other fields (runner, crash policy, datacenter) do not apply. */
function bodyQuery(body: Record<string, unknown>, kind: "getOrCreateForKey" | "create", limits: KeyLimits): ParsedQuery {
  const { name, key, input } = body;
  if (typeof name !== "string" || name === "") throw errors.invalidQuery("name must be a non-empty string");
  if (key !== undefined && key !== null && typeof key !== "string") throw errors.invalidQuery("key must be a serialized key string");
  if (input !== undefined && input !== null && typeof input !== "string") throw errors.invalidQuery("input must be base64 text");
  return parseQuery({
    [kind]: {
      name,
      key: typeof key === "string" ? parseSerializedKey(key) : [],
      input: typeof input === "string" ? decodeInput(input, "base64", "input") : undefined,
    },
  }, limits);
}

async function getActors(core: RegistryCore, search: URLSearchParams, request: () => Request, limits: KeyLimits): Promise<object[]> {
  const name = single(search, "name");
  const key = single(search, "key");
  const ids = single(search, "actor_ids");
  if (ids !== undefined) {
    if (key !== undefined) throw errors.invalidQuery("Give either actor_ids or name and key, not both");
    return actorsById(core, ids, name, request);
  }
  if (name === undefined) throw errors.invalidQuery("name is required when not using actor_ids");
  if (key === undefined) throw errors.invalidQuery("key is required: listing every actor of a name is not supported");
  const query = parseQuery({ getForKey: { name, key: parseSerializedKey(key) } }, limits);
  try {
    const { meta } = await core.locate(query, { request: request(), params: undefined, intent: undefined, authBy: "gateway" });
    return [actorJson(meta)];
  } catch (err) {
    // A known name and no actor with that key: an empty list, which the client reports as its own not-found error.
    if (err instanceof ActorError && !(err instanceof UserError) && err.code === "actor_not_found" && known(core, name)) return [];
    throw err;
  }
}

async function actorsById(core: RegistryCore, list: string, name: string | undefined, request: () => Request) {
  const ids = list.split(",").map((id) => id.trim()).filter((id) => id !== "");
  if (ids.length > MAX_IDS) throw errors.invalidQuery(`At most ${MAX_IDS} actor_ids per request`);
  const found: object[] = [];
  for (const actorId of ids) {
    const meta = await core.lookupId(actorId);
    if (!meta || (name !== undefined && meta.name !== name) || !known(core, meta.name)) continue;
    const query = parseQuery({ getForId: { name: meta.name, actorId } });
    await core.locate(query, { request: request(), params: undefined, intent: undefined, authBy: "gateway" });
    found.push(actorJson(meta));
  }
  return found;
}

function single(search: URLSearchParams, name: string): string | undefined {
  const values = search.getAll(name);
  if (values.length > 1) throw errors.invalidQuery(`The query parameter ${name} is given more than once`);
  return values[0];
}

function known(core: RegistryCore, name: string): boolean {
  return Object.prototype.hasOwnProperty.call(core.definitions, name);
}

/** An actor as RivetKit's API describes one; the client reads actor_id, name and key. */
function actorJson(meta: ActorMeta) {
  return {
    actor_id: meta.actorId,
    name: meta.name,
    key: serializeKey(meta.key),
    namespace_id: "default",
    runner_name_selector: "default",
    create_ts: meta.createdAt,
    connectable_ts: null,
    destroy_ts: null,
    sleep_ts: null,
    start_ts: null,
  };
}
