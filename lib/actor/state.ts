/** Thrown when a state cannot be saved as JSON; the message names the offending path. */
export class StateNotSerializableError extends Error {
  constructor(readonly path: string, what: string) {
    super(`State is not JSON data: ${path} ${what}`);
    this.name = "StateNotSerializableError";
  }
}

const proxyTargets = new WeakMap<object, object>();

/** True for `{}` and `Object.create(null)` of any realm (a vm context, structuredClone under Jest). */
function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  if (proto === null) return true;
  return Object.getPrototypeOf(proto) === null && Object.prototype.toString.call(value) === "[object Object]";
}

/**
 * How deeply a state may nest (containers, the outermost counting as one). JSON.stringify recurses
 * and runs out of stack at about 4,000 levels on Node 20; a deeper state fails its save by name.
 */
export const MAX_STATE_DEPTH = 1000;

type PathKey = string | number;

/** Checks that `value` survives a JSON round trip unchanged, then returns its JSON text. */
export function serializeState(value: unknown): string {
  const raw = untracked(value);
  check(raw, [], []);
  // The raw data, not the proxy: through the proxy every level would cost a trap and a new proxy.
  return JSON.stringify(raw);
}

/** Recurses at most MAX_STATE_DEPTH deep; the path is only spelled out for the error. */
function check(value: unknown, keys: PathKey[], ancestors: object[]): void {
  switch (typeof value) {
    case "string":
    case "boolean":
      return;
    case "number":
      if (!Number.isFinite(value)) throw new StateNotSerializableError(pathOf(keys), `is ${value}`);
      return;
    case "object":
      break;
    case "undefined":
      throw new StateNotSerializableError(pathOf(keys), "is undefined");
    default:
      throw new StateNotSerializableError(pathOf(keys), `is a ${typeof value}`);
  }
  if (value === null) return;
  const target = proxyTargets.get(value) ?? value;
  if (ancestors.includes(target)) throw new StateNotSerializableError(pathOf(keys), "is a circular reference");
  if (ancestors.length === MAX_STATE_DEPTH) {
    throw new StateNotSerializableError(pathOf(keys), `is nested deeper than ${MAX_STATE_DEPTH} levels`);
  }
  ancestors.push(target);
  if (Array.isArray(target)) {
    for (let i = 0; i < target.length; i++) {
      keys.push(i);
      check(target[i], keys, ancestors);
      keys.pop();
    }
  } else if (isPlainObject(target)) {
    for (const k of Object.keys(target)) {
      const v = (target as Record<string, unknown>)[k];
      // JSON drops undefined properties, which is what a reader expects of "absent".
      if (v === undefined) continue;
      keys.push(k);
      check(v, keys, ancestors);
      keys.pop();
    }
  } else {
    const kind = (target as object).constructor?.name ?? "object";
    throw new StateNotSerializableError(pathOf(keys), `is a ${kind}, not a plain object or array`);
  }
  ancestors.pop();
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;
const PATH_HEAD = 8;
const PATH_TAIL = 3;

/** `state.users[2].name`; a very deep path keeps its first and last steps around an ellipsis. */
function pathOf(keys: PathKey[]): string {
  const step = (k: PathKey) => (typeof k === "number" ? `[${k}]` : IDENTIFIER.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`);
  if (keys.length <= PATH_HEAD + PATH_TAIL + 1) return "state" + keys.map(step).join("");
  return "state" + keys.slice(0, PATH_HEAD).map(step).join("") + "…" + keys.slice(-PATH_TAIL).map(step).join("");
}

/**
 * Wraps `root` in proxies that call `onChange` on every write or delete, at any depth.
 * Proxies are created lazily on read and cached, so reading costs nothing after the first time.
 */
export function trackState<T>(root: T, onChange: () => void): T {
  if (root === null || typeof root !== "object") return root;
  const cache = new WeakMap<object, object>();
  const handler: ProxyHandler<object> = {
    get(target, prop, receiver) {
      const found = Reflect.get(target, prop, receiver);
      if (found === null || typeof found !== "object" || typeof prop === "symbol") return found;
      const value = proxyTargets.get(found) ?? found;
      // Only JSON containers are tracked: a Date or Map keeps its methods (its save fails, naming the
      // path), and a frozen property must read as itself (a Proxy invariant).
      if (!Array.isArray(value) && !isPlainObject(value)) return found;
      const own = Reflect.getOwnPropertyDescriptor(target, prop);
      if (own && !own.configurable && !own.writable) return found;
      // A proxy stored in the data (`c.state = { ...c.state }` copies them) is swapped for its raw
      // object, so proxies never wrap proxies and each change is counted once.
      if (value !== found) Reflect.set(target, prop, value);
      const cached = cache.get(value);
      if (cached) return cached;
      const proxy = new Proxy(value as object, handler);
      cache.set(value, proxy);
      proxyTargets.set(proxy, value);
      return proxy;
    },
    set(target, prop, value) {
      const raw = (value !== null && typeof value === "object" && proxyTargets.get(value)) || value;
      const had = Object.prototype.hasOwnProperty.call(target, prop);
      const prev = (target as Record<PropertyKey, unknown>)[prop];
      (target as Record<PropertyKey, unknown>)[prop] = raw;
      if (!had || prev !== raw) onChange();
      return true;
    },
    deleteProperty(target, prop) {
      if (!Object.prototype.hasOwnProperty.call(target, prop)) return true;
      delete (target as Record<PropertyKey, unknown>)[prop];
      onChange();
      return true;
    },
    defineProperty(target, prop, descriptor) {
      const ok = Reflect.defineProperty(target, prop, descriptor);
      if (ok) onChange();
      return ok;
    },
  };
  const proxy = new Proxy(root as object, handler);
  proxyTargets.set(proxy, root as object);
  return proxy as T;
}

/** The raw object behind a tracked proxy (or the value itself). */
export function untracked<T>(value: T): T {
  return ((value !== null && typeof value === "object" && proxyTargets.get(value)) || value) as T;
}
