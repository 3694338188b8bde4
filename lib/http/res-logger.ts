import type { ServerResponse } from "node:http";
import { log, type Logger } from "../log";

const LOGGER = Symbol("express-actors.logger");
type Logged = ServerResponse & { [LOGGER]?: Logger };

/**
 * The registry's logger, set once on a response it serves: the helpers that write errors and
 * stream bodies know the response, not the registry. Unset (the default logger) costs nothing.
 */
export function useLogger(res: ServerResponse, logger: Logger) {
  if (logger !== log) (res as Logged)[LOGGER] = logger;
}

export function loggerOf(res: ServerResponse): Logger {
  return (res as Logged)[LOGGER] ?? log;
}
