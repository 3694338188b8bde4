import fc from "fast-check";
import { ActorError } from "../lib/errors";
import { copyHeaders, routerHeadersOf, type RouterHeaders } from "../lib/http/request";
import { readRouterHeaders } from "../lib/http/serve";
import { DEFAULT_LIMITS } from "../lib/limits";
import { headerJson } from "../lib/protocol";
import { parseQueryText, type ParsedQuery } from "../lib/registry/query";
import { readProtocolEntries } from "../lib/websocket/serve";
import { isTransportEntry, parseProtocols, selectableProtocols } from "../lib/websocket/upgrade";
import { checkProperty, codeUnits, jsonData, tricky } from "./helpers/property";

// Properties of everything that parses what a client sends: the query and conn-params headers, the
// WebSocket protocol entries and the copied headers. Any input either parses to what was meant or
// is refused with SPEC §5's error; nothing else is ever thrown.

const KINDS = { getForKey: "get", getOrCreateForKey: "getOrCreate", create: "create", getForId: "getForId" } as const;

/** Refused the way SPEC §5 says: an ActorError with this status and one of these codes. */
function expectRefusal(err: unknown, status: number, codes: string[]) {
  expect(err).toBeInstanceOf(ActorError);
  expect({ status: (err as ActorError).status, code: codes.includes((err as ActorError).code) }).toEqual({ status, code: true });
}

function outcome<T>(run: () => T): { value: T } | { error: unknown } {
  try {
    return { value: run() };
  } catch (error) {
    return { error };
  }
}

const keyPart = codeUnits(12);
const validQuery = fc.oneof(
  fc.record({
    kind: fc.constantFrom("getForKey", "getOrCreateForKey", "create"),
    name: codeUnits(10).filter((n) => n !== ""),
    key: fc.oneof(keyPart, fc.array(keyPart, { maxLength: 6 })),
    input: fc.option(jsonData(4), { nil: undefined }),
  }),
  fc.record({ kind: fc.constant("getForId"), name: codeUnits(10).filter((n) => n !== ""), actorId: codeUnits(40).filter((n) => n !== "") }),
);
type QuerySpec = { kind: keyof typeof KINDS; name: string; key?: string | string[]; input?: unknown; actorId?: string };

function queryOf(spec: QuerySpec): unknown {
  const { kind, ...body } = spec;
  if (kind === "getForKey") delete body.input;
  return { [kind]: body };
}

/** What the parse of `spec` must be. */
function expectParsed(parsed: ParsedQuery, spec: QuerySpec) {
  expect(parsed.kind).toBe(KINDS[spec.kind]);
  expect(parsed.name).toBe(spec.name);
  if (spec.kind === "getForId") {
    expect(parsed).toMatchObject({ actorId: spec.actorId, key: [] });
    return;
  }
  expect(parsed.key).toEqual(typeof spec.key === "string" ? [spec.key] : spec.key);
  if (spec.kind !== "getForKey") expect(JSON.stringify(parsed.input)).toBe(JSON.stringify(spec.input));
}

/** Near misses: the right shape with any field of any JSON type, or any JSON at all. */
const almostQuery = fc.oneof(
  fc.record(
    {
      kind: fc.oneof(fc.constantFrom(...Object.keys(KINDS)), codeUnits(4)),
      name: jsonData(1),
      key: fc.oneof(jsonData(2), fc.array(fc.oneof(keyPart, jsonData(1)), { maxLength: 4 })),
      actorId: jsonData(1),
      input: jsonData(3),
      extra: fc.boolean(),
    },
    { requiredKeys: ["kind"] },
  ).map(({ kind, extra, ...body }) => (extra ? { [kind]: body, other: {} } : { [kind]: body })),
  jsonData(3),
);

describe("the actor query header", () => {
  it("parses every valid query as sent by the client (headerJson), whatever its characters", async () => {
    await checkProperty(
      fc.property(validQuery, (spec) => {
        const parsed = parseQueryText(headerJson(queryOf(spec as QuerySpec)));
        expectParsed(parsed, spec as QuerySpec);
      }),
      5000,
    );
  });

  it("answers any text with a parse or a 400 invalid_query, never another error", async () => {
    const text = fc.oneof(
      tricky(['{"', '":', "{", "}", "[", "]", ",", '"', "\\u", "getForKey", "key", "name", "null", "1e999"], 20),
      almostQuery.map((value) => JSON.stringify(value)),
    );
    await checkProperty(
      fc.property(text, (value) => {
        const result = outcome(() => parseQueryText(value));
        if ("error" in result) return expectRefusal(result.error, 400, ["invalid_query"]);
        const parsed = result.value;
        expect(Object.values(KINDS)).toContain(parsed.kind);
        expect(typeof parsed.name === "string" && parsed.name !== "").toBe(true);
        expect(parsed.key.length).toBeLessThanOrEqual(DEFAULT_LIMITS.maxKeyParts);
        for (const part of parsed.key) expect(typeof part === "string" && part.length <= DEFAULT_LIMITS.maxKeyPartLength).toBe(true);
      }),
      5000,
    );
  });

  it("refuses any query over maxQuerySize, and keys over maxKeyParts / maxKeyPartLength", async () => {
    const limits = { ...DEFAULT_LIMITS, maxQuerySize: 60, maxKeyParts: 3, maxKeyPartLength: 5 };
    await checkProperty(
      fc.property(validQuery, (spec) => {
        const text = headerJson(queryOf(spec as QuerySpec));
        const key = spec.kind === "getForId" ? [] : [spec.key ?? []].flat();
        const result = outcome(() => parseQueryText(text, limits));
        const over = text.length > 60 || key.length > 3 || key.some((part) => part.length > 5);
        if (over) expectRefusal("error" in result ? result.error : undefined, 400, ["invalid_query"]);
        else expect("value" in result).toBe(true);
      }),
      3000,
    );
  });
});

describe("conn params and encoding", () => {
  const query = JSON.stringify({ getForKey: { name: "a", key: [] } });

  it("hand the actor exactly the JSON sent, or refuse it with 400 invalid_query", async () => {
    const params = fc.oneof(jsonData(4).map((value) => headerJson(value)), tricky(["{", "}", '"', "[", "]", ":", ",", "\\"], 12));
    await checkProperty(
      fc.property(params, (text) => {
        const result = outcome(() => readRouterHeaders({ query, params: text }));
        let expected: { value: unknown } | undefined;
        try {
          expected = { value: JSON.parse(text) };
        } catch {
          expected = undefined;
        }
        if (expected === undefined) return expectRefusal("error" in result ? result.error : undefined, 400, ["invalid_query"]);
        if ("error" in result) return expectRefusal(result.error, 400, ["invalid_query"]);
        expect(JSON.stringify(result.value.params)).toBe(JSON.stringify(expected.value));
      }),
      5000,
    );
  });

  it("take `json` in any case and surrounding spaces, refuse anything else with 400 invalid_encoding", async () => {
    const encoding = fc.oneof(fc.constantFrom("json", "JSON", " Json ", "cbor", ""), codeUnits(6));
    await checkProperty(
      fc.property(encoding, (value) => {
        const result = outcome(() => readRouterHeaders({ query, encoding: value }));
        if (value.trim().toLowerCase() === "json") expect("value" in result).toBe(true);
        else expectRefusal("error" in result ? result.error : undefined, 400, ["invalid_encoding"]);
      }),
      3000,
    );
  });
});

describe("WebSocket protocol entries", () => {
  /** The client's encoding of a protocol entry (lib/client/http.ts). */
  const protocolJson = (value: unknown) => encodeURIComponent(JSON.stringify(value)).replace(/\(/g, "%28").replace(/\)/g, "%29");
  const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}$/);

  it("carry the query and conn params byte for byte, and never become the selected subprotocol", async () => {
    const user = fc.array(token.filter((p) => p !== "rivetkit" && !isTransportEntry(p)), { maxLength: 3 });
    await checkProperty(
      fc.property(validQuery, fc.option(jsonData(3), { nil: undefined }), user, (spec, params, protocols) => {
        const query = queryOf(spec as QuerySpec);
        const entries = ["rivetkit", "query." + protocolJson(query)];
        if (params !== undefined) entries.push("conn_params." + protocolJson(params));
        entries.push("encoding.json", ...protocols);
        for (const entry of entries) expect(entry).toMatch(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/); // HTTP tokens

        const offered = parseProtocols(entries.join(", "));
        expect(offered).toEqual(entries);
        const rivet: RouterHeaders = {};
        readProtocolEntries(offered, rivet);
        expect(rivet.query).toBe(JSON.stringify(query));
        expect(rivet.params).toBe(params === undefined ? undefined : JSON.stringify(params));
        expectParsed(readRouterHeaders(rivet).query, spec as QuerySpec);
        expect(selectableProtocols(offered)).toEqual([...protocols, "rivetkit"]);
      }),
      3000,
    );
  });

  it("answer any Sec-WebSocket-Protocol header with entries or a 400, and never select a transport entry", async () => {
    const header = tricky(["query.", "conn_params.", "encoding.", "rivetkit", ",", ", ", "%", "%7B", "%ZZ", "%E0%A4", " ", "."], 16);
    await checkProperty(
      fc.property(header, (value) => {
        const offered = parseProtocols(value);
        for (const entry of offered) expect(entry).toBe(entry.trim());
        const rivet: RouterHeaders = {};
        readProtocolEntries(offered, rivet);
        for (const entry of selectableProtocols(offered)) expect(isTransportEntry(entry)).toBe(false);
        const result = outcome(() => readRouterHeaders(rivet));
        if ("error" in result) expectRefusal(result.error, 400, ["invalid_query", "invalid_encoding"]);
      }),
      5000,
    );
  });
});

describe("header copying", () => {
  const name = fc.oneof(
    fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,10}$/),
    fc.constantFrom("X-RivetKit-Actor-Query", "x-rivetkit-query", "X-RIVETKIT-CONN-PARAMS", "x-rivetkit-encoding", "X-RivetKit-Other", "set-cookie", "Cookie", ":authority"),
  );
  // As Node hands them over: no CR, LF or NUL, no surrounding spaces; latin1 only.
  const value = fc
    .array(fc.integer({ min: 0x20, max: 0xff }), { maxLength: 12 })
    .map((codes) => String.fromCharCode(...codes).trim());
  const raw = fc.array(fc.tuple(name, value), { maxLength: 10 });
  const isInternal = (n: string) => n.toLowerCase().startsWith("x-rivetkit-") || n.startsWith(":");

  it("keeps every other header with its duplicates in order, and no X-RivetKit-* one", async () => {
    await checkProperty(
      fc.property(raw, (pairs) => {
        const headers = copyHeaders(pairs.flat(), new Headers());
        const kept = pairs.filter(([n]) => !isInternal(n));
        const names = new Set(kept.map(([n]) => n.toLowerCase()));
        expect(new Set(headers.keys())).toEqual(names);
        for (const n of names) {
          const values = kept.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v);
          // Set-Cookie stays a list; Cookie lines join with "; " (as Node joins them); the rest with ", ".
          if (n === "set-cookie") expect(headers.getSetCookie()).toEqual(values);
          else expect(headers.get(n)).toBe(values.join(n === "cookie" ? "; " : ", "));
        }
      }),
      5000,
    );
  });

  it("reads the first of each router header, whatever its case", async () => {
    await checkProperty(
      fc.property(raw, (pairs) => {
        const first = (wanted: string) => pairs.find(([n]) => n.toLowerCase() === wanted)?.[1];
        expect(routerHeadersOf(pairs.flat())).toEqual(
          Object.fromEntries(
            Object.entries({
              query: first("x-rivetkit-actor-query"),
              queryAlias: first("x-rivetkit-query"),
              encoding: first("x-rivetkit-encoding"),
              params: first("x-rivetkit-conn-params"),
            }).filter(([, v]) => v !== undefined),
          ),
        );
      }),
      5000,
    );
  });

  it("copies any value a Headers object takes and refuses the rest with 400 invalid_request", async () => {
    await checkProperty(
      fc.property(fc.array(fc.tuple(name, codeUnits(8)), { maxLength: 6 }), (pairs) => {
        const result = outcome(() => copyHeaders(pairs.flat(), new Headers()));
        const acceptable = outcome(() => {
          const plain = new Headers();
          for (const [n, v] of pairs) if (!isInternal(n)) plain.append(n, v);
          return plain;
        });
        if ("value" in acceptable) expect("value" in result && [...result.value]).toEqual([...acceptable.value]);
        else expectRefusal("error" in result ? result.error : undefined, 400, ["invalid_request"]);
      }),
      5000,
    );
  });
});
