import { OwnedElsewhere, type HopRefusal } from "../cluster/types";
import { ActorError, errorResponse, errors } from "../errors";
import type { RegistryCore } from "../registry/core";
import { parseQuery, type ActorQuery } from "../registry/query";
import type { ActorInstance } from "../actor/instance";
import { buildClient, mergeInit, type Transport } from "./core";
import { socketPair } from "../websocket/pair";
import { runActorSocket, type WebSocketTarget } from "../websocket/serve";

const ORIGIN = "http://actor";

/** The in-process client: same API and error semantics as createClient, no network, no onAuth. */
export function createServerClient(core: RegistryCore) {
  /** `again`: placed anew after the owner it was remembered at did not serve it (see FetchTarget.again). */
  const fetchActor = async (
    query: ActorQuery,
    params: unknown,
    path: string,
    request: Request,
    again?: { unreachable?: string },
  ): Promise<Response> => {
    try {
      const { instance } = await core.enter(parseQuery(query), {
        request,
        params,
        intent: "fetch",
        authBy: "skip",
        rememberedOwner: !again && request.body === null,
      });
      let response: Response;
      try {
        response = await (core.telemetry.observer?.fetch(instance, request, undefined) ?? instance.fetch(request, undefined));
      } catch (err) {
        instance.release();
        throw err;
      }
      if (request.method === "HEAD") {
        // As over HTTP: a HEAD response carries no body.
        response.body?.cancel().catch(() => {});
        instance.release();
        return new Response(null, { status: response.status, statusText: response.statusText, headers: response.headers });
      }
      return await settleBody(response, instance);
    } catch (err) {
      if (!(err instanceof OwnedElsewhere)) return errorResponse(err, core.log);
      if (again?.unreachable === err.owner.nodeId) return errorResponse(errors.ownerUnreachable(err.owner.retryAfter));
      const claims = {
        actorId: err.meta.actorId,
        name: err.meta.name,
        auth: undefined,
        origin: ORIGIN,
        method: request.method,
        path,
        ...(err.remembered && { remembered: true as const }),
      };
      const refused = (why: HopRefusal) => {
        core.ownerRefused(err.meta.actorId, err.owner);
        // A body already sent cannot be sent again.
        if (why === "failed" || !err.remembered || request.body !== null) return undefined;
        return fetchActor(query, params, path, request, { unreachable: why === "unconnected" ? err.owner.nodeId : undefined });
      };
      const { observer } = core.telemetry;
      if (observer) return observer.forward(request, claims, (watch) => core.cluster!.forwardFetch(request, err.owner, claims, watch, refused));
      return core.cluster!.forwardFetch(request, err.owner, claims, undefined, refused);
    }
  };

  const transport: Transport = {
    async fetch(query, params, path, base, init) {
      // Outside fetchActor: a bad init rejects with fetch's TypeError instead of becoming a 500.
      return fetchActor(query, params, path, new Request(ORIGIN + path, mergeInit(base, init)));
    },
    async resolve(query) {
      try {
        const parsed = parseQuery(query);
        if (core.shuttingDown) throw errors.shuttingDown();
        core.definition(parsed.name);
        return (await core.resolve(parsed)).actorId;
      } catch (err) {
        // As over HTTP: only library errors are shown; anything else (a store failure) is logged.
        if (err instanceof ActorError) throw err;
        core.log.error({ err }, "resolving an actor failed");
        throw errors.internal();
      }
    },
    async websocket(query, params, path, protocols) {
      const request = new Request(ORIGIN + path, {
        headers: protocols.length > 0 ? { "sec-websocket-protocol": protocols.join(", ") } : {},
      });
      // The actor's logger once it runs; the caller's own listeners report to the registry's.
      const logger = { current: core.log };
      const { client, server, serverDriver } = socketPair("ws://actor" + path, protocols[0] ?? "", { client: core.log, server: logger });
      let target: WebSocketTarget | ActorError;
      try {
        target = { query: parseQuery(query), params, path, authBy: "skip" };
      } catch (err) {
        target = err instanceof ActorError ? err : errors.internal();
      }
      void runActorSocket(core, server, serverDriver, request, target, logger);
      return client as unknown as WebSocket;
    },
  };
  return buildClient(transport);
}

const PENDING = Symbol("pending");
/** Reads that settle before the next macrotask count as "already there", as in http/response.ts. */
const EAGER_READS = 4;
const nextMacrotask = () => new Promise<typeof PENDING>((resolve) => setImmediate(resolve, PENDING));

/**
 * A body the actor has already finished (Response.json, a string) is buffered here, so the actor is
 * free at once even if the caller never reads it. A body still being produced keeps the actor busy
 * (awake) until the caller has read or cancelled it.
 */
async function settleBody(response: Response, instance: ActorInstance): Promise<Response> {
  const init = { status: response.status, statusText: response.statusText, headers: response.headers };
  if (!response.body) {
    instance.release();
    return response;
  }
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let pending: Promise<ReadableStreamReadResult<Uint8Array>> | undefined;
  try {
    for (let i = 0; i < EAGER_READS && !pending; i++) {
      const read = reader.read();
      const result = await Promise.race([read, nextMacrotask()]);
      if (result === PENDING) pending = read;
      else if (result.done) {
        instance.release();
        return new Response(concat(chunks), init);
      } else chunks.push(result.value);
    }
  } catch (err) {
    instance.release();
    throw err;
  }
  let released = false;
  const release = () => {
    if (!released) {
      released = true;
      instance.release();
    }
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const buffered = chunks.shift();
      if (buffered) {
        controller.enqueue(buffered);
        return;
      }
      try {
        const { done, value } = await (pending ?? reader.read());
        pending = undefined;
        if (done) {
          release();
          controller.close();
        } else controller.enqueue(value);
      } catch (err) {
        release();
        controller.error(err);
      }
    },
    cancel(reason) {
      release();
      return reader.cancel(reason);
    },
  });
  return new Response(body, init);
}

function concat(chunks: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(chunks.reduce((total, chunk) => total + chunk.byteLength, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}
