/** Minimal leveled logger; EXPRESS_ACTORS_LOG=debug|info|warn|error|silent picks the level. */
export interface Logger {
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const;
type Level = keyof typeof LEVELS;

function threshold(): number {
  const env = (typeof process !== "undefined" && process.env.EXPRESS_ACTORS_LOG) || "info";
  return LEVELS[env as Level] ?? LEVELS.info;
}

export function createLogger(prefix: string): Logger {
  const tag = `[express-actors${prefix ? " " + prefix : ""}]`;
  // console is looked up per call, so a console patched after import (log shippers, test spies) gets the lines.
  const at = (level: Exclude<Level, "silent">) => (...args: unknown[]) => {
    if (LEVELS[level] >= threshold()) console[level](tag, ...args);
  };
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

export const log = createLogger("");
