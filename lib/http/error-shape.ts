import type { ServerResponse } from "node:http";
import { publicError } from "../errors";

/** What a client sees for an error: its status and JSON body. */
export type ErrorShape = (err: unknown) => { status: number; body: unknown };

const SHAPE = Symbol("express-actors.errorShape");
type Shaped = ServerResponse & { [SHAPE]?: ErrorShape };

/**
 * The body of SPEC §5 by default; a route that speaks another protocol (the RivetKit gateway,
 * SPEC §10) sets its own shape once on the response, and every error written to it follows.
 */
export function useErrorShape(res: ServerResponse, shape: ErrorShape) {
  (res as Shaped)[SHAPE] = shape;
}

export function errorPayload(res: ServerResponse, err: unknown): { status: number; body: unknown } {
  return ((res as Shaped)[SHAPE] ?? publicError)(err);
}
