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

/** Checks that `value` survives a JSON round trip unchanged, then returns its JSON text. */
export function serializeState(value: unknown): string {
  check(value, "state", []);
  return JSON.stringify(value);
}

function check(value: unknown, path: string, ancestors: object[]): void {
  switch (typeof value) {
    case "string":
    case "boolean":
      return;
    case "number":
      if (!Number.isFinite(value)) throw new StateNotSerializableError(path, `is ${value}`);
      return;
    case "object":
      break;
    case "undefined":
      throw new StateNotSerializableError(path, "is undefined");
    default:
      throw new StateNotSerializableError(path, `is a ${typeof value}`);
  }
  if (value === null) return;
  const target = proxyTargets.get(value) ?? value;
  if (ancestors.includes(target)) throw new StateNotSerializableError(path, "is a circular reference");
  ancestors.push(target);
  if (Array.isArray(target)) {
    for (let i = 0; i < target.length; i++) check(target[i], `${path}[${i}]`, ancestors);
  } else if (isPlainObject(target)) {
    for (const k of Object.keys(target)) {
      const v = (target as Record<string, unknown>)[k];
      // JSON drops undefined properties, which is what a reader expects of "absent".
      if (v !== undefined) check(v, /^[A-Za-z_$][\w$]*$/.test(k) ? `${path}.${k}` : `${path}[${JSON.stringify(k)}]`, ancestors);
    }
  } else {
    const kind = (target as object).constructor?.name ?? "object";
    throw new StateNotSerializableError(path, `is a ${kind}, not a plain object or array`);
  }
  ancestors.pop();
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
