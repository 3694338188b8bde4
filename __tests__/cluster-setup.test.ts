import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { actor, setup } from "express-actors";
import { redisCluster } from "express-actors/cluster/redis";

const base = { url: "redis://127.0.0.1:1", advertise: "http://127.0.0.1:3001/registry", secret: "0123456789abcdef" };

describe("redisCluster() options", () => {
  test.each([
    [{ ...base, url: undefined }, /pass either `url` or `client`/],
    [{ ...base, advertise: "10.0.0.5:3001" }, /`advertise` must be this node's http\(s\) URL/],
    [{ ...base, advertise: "ftp://10.0.0.5/registry" }, /`advertise` must be this node's http\(s\) URL/],
    [{ ...base, secret: "short" }, /`secret` must be a string of at least 16 characters/],
    [{ ...base, leaseMs: 50 }, /`leaseMs` must be an integer of at least 300/],
    [{ ...base, leaseMs: 1500.5 }, /`leaseMs` must be an integer/],
  ])("refuses %p", (options, message) => {
    expect(() => redisCluster(options as Parameters<typeof redisCluster>[0])).toThrow(message);
  });

  test("setup() refuses a cluster that is not one", () => {
    const counter = actor({ state: {}, onFetch: () => new Response("ok") });
    expect(() => setup({ use: { counter }, cluster: {} as never })).toThrow(/`cluster` must come from redisCluster\(\)/);
  });
});

test("import 'express-actors' loads neither ioredis nor http-proxy-middleware", () => {
  const probe = `require(${JSON.stringify(path.join(__dirname, "..", "lib"))});
    const loaded = Object.keys(require.cache).filter((file) => /node_modules[\\\\/](ioredis|http-proxy|http-proxy-middleware)[\\\\/]/.test(file));
    process.stdout.write(JSON.stringify(loaded));`;
  const run = spawnSync(process.execPath, ["--import", "tsx", "-e", probe], { encoding: "utf8", timeout: 30_000 });
  expect(run.stderr).toBe("");
  expect(JSON.parse(run.stdout)).toEqual([]);
});
