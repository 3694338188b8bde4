const base = {
  testEnvironment: "node",
  roots: ["<rootDir>/__tests__"],
  transform: { "^.+\\.ts$": ["ts-jest", { tsconfig: "tsconfig.json" }] },
  moduleNameMapper: {
    "^express-actors$": "<rootDir>/lib/index.ts",
    "^express-actors/client$": "<rootDir>/lib/client/index.ts",
    "^express-actors/stores/(sqlite|postgres|redis)$": "<rootDir>/lib/stores/$1.ts",
    "^express-actors/testing$": "<rootDir>/lib/testing/index.ts",
    "^express-actors/cluster/redis$": "<rootDir>/lib/cluster/redis.ts",
  },
};

/**
 * express-ws@5 brings its own ws 7, exactly as in a user's install: every test runs on that.
 * The WebSocket suites run once more with ws 8 mapped in for every module, express-ws included,
 * as an app that forces ws 8 gets it.
 * @type {import('jest').Config}
 */
module.exports = {
  testTimeout: 20000,
  projects: [
    { ...base, displayName: "ws7", testMatch: ["**/*.test.ts"] },
    {
      ...base,
      displayName: "ws8",
      testMatch: ["**/websocket-*.test.ts"],
      moduleNameMapper: { ...base.moduleNameMapper, "^ws$": "<rootDir>/node_modules/ws" },
      setupFiles: ["<rootDir>/__tests__/setup/ws8.ts"],
    },
  ],
};
