/** One log method in pino's form: an object of fields first (`err` for an error), then the message. */
export interface LogFn {
  (fields: object, message?: string, ...args: unknown[]): void;
  (message: string, ...args: unknown[]): void;
}

/**
 * What `setup({ logger })` takes and `c.log` is: any pino-compatible logger (pino itself, a
 * pino-http `req.log`, or anything with `child` and these four methods).
 */
export interface Logger {
  child(bindings: Record<string, unknown>): Logger;
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const;
type Level = Exclude<keyof typeof LEVELS, "silent">;

/** EXPRESS_ACTORS_LOG=debug|info|warn|error|silent, read per line so a test can change it. */
function threshold(): number {
  const env = (typeof process !== "undefined" && process.env.EXPRESS_ACTORS_LOG) || "info";
  return LEVELS[env as keyof typeof LEVELS] ?? LEVELS.info;
}

/**
 * The default logger: console lines tagged with the same fields a pino child would carry,
 * `[express-actors actor=room actorId=…] message`, then the error (with its stack) if any.
 */
export function consoleLogger(bindings: Record<string, unknown> = {}): Logger {
  const tag = "[express-actors" + Object.entries(bindings).map(([k, v]) => ` ${k}=${String(v)}`).join("") + "]";
  const at =
    (level: Level): LogFn =>
    (first: unknown, ...rest: unknown[]) => {
      if (LEVELS[level] < threshold()) return;
      // console is looked up per call, so a console patched after import (log shippers, test spies) gets the lines.
      if (typeof first !== "object" || first === null) {
        console[level](tag, first, ...rest);
        return;
      }
      const { err, ...fields } = first as { err?: unknown };
      const extra = Object.keys(fields).length > 0 ? [fields] : [];
      // "onStop threw:" followed by the error, as a console reader expects.
      if (err !== undefined && typeof rest[0] === "string") rest[0] += ":";
      console[level](tag, ...rest, ...extra, ...(err === undefined ? [] : [err]));
    };
  return {
    child: (more) => consoleLogger({ ...bindings, ...more }),
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
  };
}

/** For messages about the process rather than one registry (setup mistakes, an upgrade hook). */
export const log = consoleLogger();

/** Checked once at setup, so a wrong logger fails there and not at the first error it should report. */
export function checkLogger(logger: unknown): Logger {
  const l = logger as Partial<Logger> | null;
  const methods = ["child", "debug", "info", "warn", "error"] as const;
  if (!l || typeof l !== "object" || methods.some((m) => typeof l[m] !== "function")) {
    throw new TypeError("setup(): `logger` must be pino-compatible: child(), debug(), info(), warn() and error()");
  }
  return l as Logger;
}
