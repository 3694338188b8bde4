import compression from "compression";
import express, { type Request } from "express";
import { actorMiddleware, fileStore, forwardToActor, setup } from "express-actors";
import { cart, counter, feed } from "./actors";

const PORT = Number(process.env.PORT ?? 3000);

// fileStore keeps state in .demo-data/ (git-ignored), so counts and carts survive a restart.
const registry = setup({
  use: { counter, feed, cart },
  store: fileStore({ dir: ".demo-data" }),
});

const app = express();
// Compression and body parsing in front, as in a typical existing app: SSE still streams per event,
// and a body express.json() already read is rebuilt for the actor.
app.use(compression());
app.use(express.json());

// The public router: ANY /registry/actors/raw/http/*, POST /registry/actors/resolve, GET /registry/health.
app.use("/registry", actorMiddleware(registry));

// A legacy URL scheme, served by the cart actor keyed by :id. Express 5 syntax (Express 4: "/legacy/carts/:id/*").
// auth: "skip" because this route is the gate: cart has no onAuth, so the public router refuses it (403).
type CartRequest = Request<{ id: string; rest: string[] }>;
app.all(
  "/legacy/carts/:id/*rest",
  forwardToActor(registry, {
    name: "cart",
    key: (req: CartRequest) => [req.params.id],
    path: (req: CartRequest) => restPath(req.params.rest, req.url),
    auth: "skip",
  }),
);

app.get("/", (_req, res) => {
  res.type("text").send("express-actors demo: see the terminal for curl commands\n");
});

/** Express 5 hands `*rest` over as decoded segments: re-encode them and keep the query string. */
function restPath(segments: string[], url: string): string {
  const search = url.indexOf("?");
  return "/" + segments.map(encodeURIComponent).join("/") + (search === -1 ? "" : url.slice(search));
}

const server = app.listen(PORT, () => {
  const base = `http://localhost:${PORT}`;
  const query = (name: string) => `'X-RivetKit-Actor-Query: {"getOrCreateForKey":{"name":"${name}","key":["demo"]}}'`;
  console.log(`express-actors demo on ${base}

# counter through the router (the query header picks the actor)
curl -X POST ${base}/registry/actors/raw/http/increment -H ${query("counter")}
curl ${base}/registry/actors/raw/http/count -H ${query("counter")}

# Server-Sent Events, one per second, through compression() (Ctrl-C to stop)
curl -N --compressed ${base}/registry/actors/raw/http/events -H ${query("feed")}

# a legacy Express route forwarded to the cart actor "42"
curl -X POST ${base}/legacy/carts/42/items -H 'content-type: application/json' -d '{"item":"apple"}'
curl ${base}/legacy/carts/42/items

# the cart has no onAuth, so the public router refuses it: 403 {"code":"forbidden",...}
curl -i ${base}/registry/actors/raw/http/items -H ${query("cart")}

curl ${base}/registry/health
`);
});

// Stop taking connections, let the registry finish its work and save every state, then exit.
let stopping = false;
async function stop(signal: string) {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: shutting down`);
  server.close();
  server.closeIdleConnections();
  // An SSE stream never ends by itself; drop those connections so shutdown does not wait on them.
  setTimeout(() => server.closeAllConnections(), 500).unref();
  await registry.shutdown();
  process.exit(0);
}
process.on("SIGINT", () => void stop("SIGINT"));
process.on("SIGTERM", () => void stop("SIGTERM"));
