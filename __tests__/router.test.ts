import request from "supertest";
import { actor, actorMiddleware, setup } from "express-actors";
import { expressVersions } from "./helpers/servers";

const counter = actor({
  state: { count: 0 },
  onAuth: () => null,
  onFetch: async (c, req) => {
    if (req.method === "POST") c.state.count++;
    return Response.json({ count: c.state.count, url: req.url });
  },
});

const query = (key: string) => JSON.stringify({ getOrCreateForKey: { name: "counter", key: [key] } });

describe.each(expressVersions)("router on $label", ({ express }) => {
  const registry = setup({ use: { counter } });
  const app = express();
  app.use("/registry", actorMiddleware(registry));
  afterAll(() => registry.shutdown());

  it("routes a request to the actor and keeps its state between requests", async () => {
    await request(app).post("/registry/actors/raw/http/inc").set("X-RivetKit-Actor-Query", query("a")).expect(200);
    const res = await request(app)
      .post("/registry/actors/raw/http/inc?x=1")
      .set("X-RivetKit-Actor-Query", query("a"))
      .expect(200);
    expect(res.body.count).toBe(2);
    expect(res.body.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/inc\?x=1$/);
  });

  it("answers GET {mount}/health", async () => {
    const res = await request(app).get("/registry/health").expect(200);
    expect(res.body).toEqual({ status: "ok" });
  });

  it("passes other paths to the next handler", async () => {
    await request(app).get("/registry/elsewhere").expect(404);
  });
});
