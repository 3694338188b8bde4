interface Entry<T> {
  item: T;
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * Groups writes: every call made in one turn of the event loop goes to `run` as one batch (one
 * round trip, one commit), and each call settles with its own outcome (`run` returns an error or
 * undefined per item, or rejects for the whole batch). Calls with the same key run one after the
 * other, so a batch never holds two writes of one key and they land in the order they were made.
 */
export function batcher<T>(run: (items: T[]) => Promise<Array<Error | undefined>>) {
  let pending: Entry<T>[] = [];
  const last = new Map<string, Promise<void>>();

  async function flush() {
    const entries = pending;
    pending = [];
    let outcomes: Array<Error | undefined>;
    try {
      outcomes = await run(entries.map((e) => e.item));
    } catch (err) {
      for (const e of entries) e.reject(err);
      return;
    }
    entries.forEach((e, i) => (outcomes[i] ? e.reject(outcomes[i]) : e.resolve()));
  }

  const enqueue = (item: T) =>
    new Promise<void>((resolve, reject) => {
      if (pending.length === 0) setImmediate(flush);
      pending.push({ item, resolve, reject });
    });

  return {
    write(key: string, item: T): Promise<void> {
      const previous = last.get(key);
      const settled = () => enqueue(item);
      const write = previous ? previous.then(settled, settled) : enqueue(item);
      last.set(key, write);
      const forget = () => {
        if (last.get(key) === write) last.delete(key);
      };
      write.then(forget, forget);
      return write;
    },
    /** Settles once every write made so far has settled. */
    async idle(): Promise<void> {
      while (last.size) await Promise.allSettled([...last.values()]);
    },
  };
}
