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
  const at = (level: Level, sink: (...a: unknown[]) => void) => (...args: unknown[]) => {
    if (LEVELS[level] >= threshold()) sink(tag, ...args);
  };
  return {
    debug: at("debug", console.debug),
    info: at("info", console.info),
    warn: at("warn", console.warn),
    error: at("error", console.error),
  };
}

export const log = createLogger("");
