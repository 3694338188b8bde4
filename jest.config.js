/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: "node",
  roots: ["<rootDir>/__tests__"],
  testMatch: ["**/*.test.ts"],
  transform: { "^.+\\.ts$": ["ts-jest", { tsconfig: "tsconfig.json" }] },
  moduleNameMapper: {
    "^express-actors$": "<rootDir>/lib/index.ts",
    "^express-actors/client$": "<rootDir>/lib/client/index.ts",
  },
  testTimeout: 20000,
};
