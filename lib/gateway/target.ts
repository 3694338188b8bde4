import { errors } from "../errors";
import type { RegistryCore } from "../registry/core";
import { parseQuery, type KeyLimits, type ParsedQuery } from "../registry/query";
import { decodeInput } from "./input";
import { parseQueryKey } from "./key";
import type { GatewayRoute } from "./paths";

/** The actor a gateway request addresses and the path and query it sees. */
export interface GatewayTarget {
  query: ParsedQuery;
  path: string;
}

const QUERY_PREFIX = "rvt-";
/** The `rvt-*` parameters of the 2.3.x query gateway; those we have no use for are accepted and ignored. */
const KNOWN = new Set([
  "rvt-namespace", "rvt-method", "rvt-key", "rvt-input", "rvt-runner", "rvt-region",
  "rvt-crash-policy", "rvt-token", "rvt-skip-ready-wait",
]);

/**
 * `/gateway/{actorId}/…` (2.0.x; `{actorId}@{token}` too) or, when the query has `rvt-*`
 * parameters, the query gateway `/gateway/{name}/…?rvt-method=…` of 2.3.x clients. The `rvt-*`
 * parameters are removed from what the actor sees; the rest of the query is kept byte for byte.
 */
export async function resolveGatewayTarget(core: RegistryCore, route: GatewayRoute, limits: KeyLimits): Promise<GatewayTarget> {
  const q = route.rest.indexOf("?");
  const pathname = q === -1 ? route.rest : route.rest.slice(0, q);
  const kept: string[] = [];
  const rvt = new Map<string, string>();
  if (q !== -1) {
    for (const component of route.rest.slice(q + 1).split("&")) {
      const param = rvtParam(component);
      if (!param) kept.push(component);
      else if (!KNOWN.has(param.name)) throw errors.invalidQuery(`Unknown query gateway parameter ${param.name}`);
      else if (rvt.has(param.name)) throw errors.invalidQuery(`The query gateway parameter ${param.name} is given twice`);
      else rvt.set(param.name, param.value);
    }
  }
  const path = kept.length === 0 ? pathname : `${pathname}?${kept.join("&")}`;
  const query = rvt.size > 0 ? queryOf(decodeSegment(route.segment), rvt, limits) : await idQuery(core, route.segment);
  return { query, path };
}

/** A `name=value` query component whose decoded name starts with `rvt-`, decoded; else undefined. */
function rvtParam(component: string): { name: string; value: string } | undefined {
  const eq = component.indexOf("=");
  const name = formDecode(eq === -1 ? component : component.slice(0, eq));
  if (name === undefined || !name.startsWith(QUERY_PREFIX)) return undefined;
  const value = formDecode(eq === -1 ? "" : component.slice(eq + 1));
  if (value === undefined) throw errors.invalidQuery(`The query gateway parameter ${name} has a malformed percent-escape`);
  return { name, value };
}

function formDecode(text: string): string | undefined {
  try {
    return decodeURIComponent(text.replace(/\+/g, " "));
  } catch {
    return undefined;
  }
}

function queryOf(name: string, rvt: Map<string, string>, limits: KeyLimits): ParsedQuery {
  const method = rvt.get("rvt-method");
  const key = parseQueryKey(rvt.get("rvt-key"));
  const inputText = rvt.get("rvt-input");
  if (method === "get") {
    if (inputText !== undefined) throw errors.invalidQuery("rvt-input is only allowed with rvt-method=getOrCreate");
    return parseQuery({ getForKey: { name, key } }, limits);
  }
  if (method === "getOrCreate") {
    const input = inputText === undefined ? undefined : decodeInput(inputText, "base64url", "rvt-input");
    return parseQuery({ getOrCreateForKey: { name, key, input } }, limits);
  }
  throw errors.invalidQuery(
    method === undefined ? "The query gateway needs rvt-method" : `Unsupported rvt-method ${JSON.stringify(method)}; expected get or getOrCreate`,
  );
}

/** The id form: the actor's name comes from its record, so that its own onAuth can run. */
async function idQuery(core: RegistryCore, segment: string): Promise<ParsedQuery> {
  const at = segment.indexOf("@");
  const actorId = decodeSegment(at === -1 ? segment : segment.slice(0, at));
  const meta = await core.lookupId(actorId);
  if (!meta) throw errors.actorNotFound(`no actor with id ${JSON.stringify(actorId)}`);
  return parseQuery({ getForId: { name: meta.name, actorId } });
}

function decodeSegment(segment: string): string {
  let text: string | undefined;
  try {
    text = decodeURIComponent(segment);
  } catch {
    // Falls through to the refusal below.
  }
  if (!text) throw errors.invalidQuery(`The gateway path segment ${JSON.stringify(segment)} is not an actor id or name`);
  return text;
}
