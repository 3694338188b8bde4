import fc from "fast-check";
import { jsonData } from "./property";

/**
 * Mutations of a nested state as JSON commands, applied by one interpreter to a plain model and to
 * an actor's tracked state alike (in process or inside an actor's onFetch). Commands that would
 * leave a state JSON cannot hold (array holes, cycles, non-index array properties) are skipped on
 * both sides, so the model is always the JSON the state must save as.
 */
type Step = string | number;
export type Command =
  | { op: "set"; path: Step[]; value: unknown }
  | { op: "delete"; path: Step[] }
  | { op: "alias"; from: Step[]; to: Step[] }
  | { op: "copy"; path: Step[] }
  | { op: "assign"; path: Step[]; value: Record<string, unknown> }
  | { op: "push" | "unshift"; path: Step[]; values: unknown[] }
  | { op: "pop" | "shift" | "reverse" | "sort"; path: Step[] }
  | { op: "splice"; path: Step[]; start: number; deleteCount: number; items: unknown[] }
  | { op: "truncate"; path: Step[]; length: number }
  | { op: "fill"; path: Step[]; value: unknown }
  | { op: "reload" };

const step = fc.oneof(fc.constantFrom("a", "b", "c", "d"), fc.integer({ min: 0, max: 3 }));
const path = fc.array(step, { maxLength: 4 });
const target = fc.array(step, { minLength: 1, maxLength: 4 });
const value = jsonData(3);
const object = fc.dictionary(fc.constantFrom("a", "b", "c", "x"), jsonData(2), { maxKeys: 3, noNullPrototype: true });

export const command: fc.Arbitrary<Command> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant("set" as const), path: target, value }), weight: 6 },
  { arbitrary: fc.record({ op: fc.constant("delete" as const), path: target }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("alias" as const), from: path, to: target }), weight: 2 },
  fc.record({ op: fc.constant("copy" as const), path: target }),
  fc.record({ op: fc.constant("assign" as const), path, value: object }),
  fc.record({ op: fc.constantFrom("push" as const, "unshift" as const), path, values: fc.array(value, { maxLength: 3 }) }),
  fc.record({ op: fc.constantFrom("pop" as const, "shift" as const, "reverse" as const, "sort" as const), path }),
  fc.record({
    op: fc.constant("splice" as const),
    path,
    start: fc.integer({ min: -3, max: 4 }),
    deleteCount: fc.integer({ min: 0, max: 3 }),
    items: fc.array(value, { maxLength: 3 }),
  }),
  fc.record({ op: fc.constant("truncate" as const), path, length: fc.integer({ min: 0, max: 4 }) }),
  fc.record({ op: fc.constant("fill" as const), path, value }),
  { arbitrary: fc.constant({ op: "reload" as const }), weight: 1 },
);

/** A root object to start from: an object or array with some nesting, so paths find containers. */
export const initialState = fc.oneof(
  { arbitrary: fc.dictionary(fc.constantFrom("a", "b", "c", "d"), jsonData(3), { maxKeys: 4, noNullPrototype: true }), weight: 3 },
  fc.array(jsonData(3), { maxLength: 4 }),
);

const isContainer = (v: unknown): v is Record<string, unknown> | unknown[] => v !== null && typeof v === "object";

/** The container at `steps` under root, or undefined when a step misses. */
function walk(root: unknown, steps: Step[]): Record<string, unknown> | unknown[] | undefined {
  let node = root;
  for (const s of steps) {
    if (!isContainer(node)) return undefined;
    node = Array.isArray(node) ? (typeof s === "number" ? node[s] : undefined) : (node as Record<string, unknown>)[String(s)];
  }
  return isContainer(node) ? node : undefined;
}

function read(root: unknown, steps: Step[]): unknown {
  if (steps.length === 0) return root;
  const parent = walk(root, steps.slice(0, -1));
  const last = steps[steps.length - 1];
  if (!parent) return undefined;
  if (Array.isArray(parent)) return typeof last === "number" ? parent[last] : undefined;
  return Object.prototype.hasOwnProperty.call(parent, String(last)) ? parent[String(last)] : undefined;
}

/** Whether `needle` is `value` or inside it. */
function contains(value: unknown, needle: object, seen = new Set<unknown>()): boolean {
  if (!isContainer(value) || seen.has(value)) return false;
  if (value === needle) return true;
  seen.add(value);
  return Object.values(value).some((child) => contains(child, needle, seen));
}

/** Stores `v` at `key` of `parent` when JSON can hold the result; returns whether it did. */
function store(parent: Record<string, unknown> | unknown[], key: Step, v: unknown): void {
  if (v === undefined || contains(v, parent)) return;
  if (Array.isArray(parent)) {
    if (typeof key === "number" && key <= parent.length) parent[key] = v;
  } else {
    parent[String(key)] = v;
  }
}

/** Applies one command to `root` (plain or tracked); "reload" is the caller's to handle. */
export function apply(root: unknown, cmd: Command): void {
  if (cmd.op === "reload") return;
  if (cmd.op === "set" || cmd.op === "delete" || cmd.op === "alias" || cmd.op === "copy") {
    const steps = cmd.op === "alias" ? cmd.to : cmd.path;
    const parent = walk(root, steps.slice(0, -1));
    const key = steps[steps.length - 1];
    if (!parent) return;
    if (cmd.op === "set") store(parent, key, structuredClone(cmd.value));
    else if (cmd.op === "alias") store(parent, key, read(root, cmd.from));
    else if (cmd.op === "copy") {
      const current = read(root, steps);
      if (isContainer(current)) store(parent, key, Array.isArray(current) ? [...current] : { ...current });
    } else if (!Array.isArray(parent)) delete parent[String(key)];
    return;
  }
  const node = walk(root, cmd.path);
  if (!node) return;
  if (cmd.op === "assign") {
    if (!Array.isArray(node)) Object.assign(node, structuredClone(cmd.value));
    return;
  }
  if (!Array.isArray(node)) return;
  switch (cmd.op) {
    case "push":
      node.push(...structuredClone(cmd.values));
      break;
    case "unshift":
      node.unshift(...structuredClone(cmd.values));
      break;
    case "pop":
      node.pop();
      break;
    case "shift":
      node.shift();
      break;
    case "reverse":
      node.reverse();
      break;
    case "sort":
      node.sort();
      break;
    case "splice":
      node.splice(cmd.start, cmd.deleteCount, ...structuredClone(cmd.items));
      break;
    case "truncate":
      if (cmd.length < node.length) node.length = cmd.length;
      break;
    case "fill":
      if (node.length > 0) node.fill(structuredClone(cmd.value));
      break;
  }
}
