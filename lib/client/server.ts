import { errorResponse, errors } from "../errors";
import type { RegistryCore } from "../registry/core";
import { INTERNAL_HEADER_PREFIX } from "../protocol";
import { parseQuery } from "../registry/query";
import type { ActorInstance } from "../actor/instance";
import { buildClient, type Transport } from "./core";

const ORIGIN = "http://actor";

/** The in-process client: same API and error semantics as createClient, no network, no onAuth. */
export function createServerClient(core: RegistryCore) {
  const transport: Transport = {
    async fetch(query, params, path, base, init) {
      try {
        const request = buildRequest(path, base, init);
        const { instance } = await core.enter(parseQuery(query), {
          request,
          params,
          intent: "fetch",
          skipAuth: true,
        });
        let response: Response;
        try {
          response = await instance.fetch(request, undefined);
        } catch (err) {
          instance.release();
          throw err;
        }
        return releaseWhenConsumed(response, instance);
      } catch (err) {
        return errorResponse(err);
      }
    },
    async resolve(query) {
      const parsed = parseQuery(query);
      if (core.shuttingDown) throw errors.shuttingDown();
      core.definition(parsed.name);
      return (await core.resolve(parsed)).actorId;
    },
  };
  return buildClient(transport);
}

function buildRequest(path: string, base: Request | undefined, init: RequestInit | undefined): Request {
  const request = new Request(ORIGIN + path, base ? new Request(base, init) : init);
  for (const name of [...request.headers.keys()]) {
    if (name.startsWith(INTERNAL_HEADER_PREFIX)) request.headers.delete(name);
  }
  return request;
}

/** The actor stays busy (awake) until the caller has read or cancelled a streamed body. */
function releaseWhenConsumed(response: Response, instance: ActorInstance): Response {
  if (!response.body) {
    instance.release();
    return response;
  }
  const reader = response.body.getReader();
  let released = false;
  const release = () => {
    if (!released) {
      released = true;
      instance.release();
    }
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
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
  return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
}
