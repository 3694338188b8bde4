import fc from "fast-check";
import { actor, fileStore, setup } from "express-actors";
import { serializeState, trackState, untracked } from "../lib/actor/state";
import { tempDir, waitFor } from "./helpers/actor-harness";
import { checkProperty } from "./helpers/property";
import { apply, command, initialState, type Command } from "./helpers/state-commands";

// State tracking: random mutations of nested state, at any depth and through aliases, are all seen
// (a change nobody saw is a lost write) and the state always round-trips through save and load.

const json = (value: unknown) => JSON.stringify(value);

describe("tracked state", () => {
  it("sees every change, and saves exactly what a plain copy of the same mutations holds", async () => {
    await checkProperty(
      fc.property(initialState, fc.array(command, { maxLength: 30 }), (initial, commands) => {
        let model: unknown = structuredClone(initial);
        let changed = false;
        const load = (text: string) => trackState(JSON.parse(text), () => (changed = true));
        let state = load(json(initial));
        for (const cmd of commands) {
          if (cmd.op === "reload") {
            // Saved and loaded again: aliases become copies on both sides.
            state = load(serializeState(state));
            model = JSON.parse(json(model));
            continue;
          }
          const before = json(model);
          changed = false;
          apply(model, cmd);
          apply(state, cmd);
          const after = json(model);
          expect({ cmd, saved: serializeState(state) }).toEqual({ cmd, saved: after });
          if (after !== before) expect({ cmd, changed }).toEqual({ cmd, changed: true });
        }
        expect(json(untracked(state))).toBe(json(model));
      }),
      2000,
    );
  });
});

describe("an actor's state through save and load (fileStore)", () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let activations = 0;
  const awake = new Set<string>();
  const doc = actor({
    createState: (_c, input: { initial: unknown } | undefined) => input?.initial as object,
    createVars: () => ({ activation: ++activations }),
    onStart: (c) => {
      awake.add(c.key[0]);
    },
    onStop: (c) => {
      awake.delete(c.key[0]);
    },
    onFetch: async (c, request) => {
      const url = new URL(request.url);
      if (url.pathname === "/apply") {
        for (const cmd of (await request.json()) as Command[]) {
          if (cmd.op === "set" && cmd.path.length === 0) c.state = cmd.value as object;
          else apply(c.state, cmd);
        }
      } else if (url.pathname === "/sleep") c.sleep();
      return Response.json({ state: c.state, activation: c.vars.activation });
    },
  });
  let registry: ReturnType<typeof makeRegistry>;
  const makeRegistry = () => setup({ use: { doc }, store: fileStore({ dir: dir.dir }) });

  beforeAll(async () => {
    dir = await tempDir("express-actors-state-");
    registry = makeRegistry();
  });
  afterAll(async () => {
    await registry.shutdown();
    await dir.cleanup();
  });

  let runs = 0;
  it("holds after every batch of mutations, every sleep and wake, and a restart of the registry", async () => {
    const batch = fc.array(command.filter((c) => c.op !== "reload"), { maxLength: 8 });
    const replace = fc.record({ op: fc.constant("set" as const), path: fc.constant<Array<string | number>>([]), value: initialState });
    await checkProperty(
      fc.asyncProperty(initialState, fc.array(batch, { minLength: 1, maxLength: 4 }), fc.option(replace, { nil: undefined }),
        async (initial, batches, replacement) => {
        // `c.state = …` replaces the whole state, once in a while.
        if (replacement) batches[0] = [replacement, ...batches[0]];
        const key = [`run-${++runs}`];
        let model: unknown = structuredClone(initial);
        const handle = () => registry.createServerClient().doc.getOrCreate(key, { input: { initial } });
        /** Sleep: onStop, save to the files, evict; the next request loads a new activation from them. */
        const sleep = async () => {
          await handle().fetch("/sleep", { method: "POST" });
          await waitFor(() => !awake.has(key[0]), "the actor to sleep");
        };
        let last = 0;
        for (const commands of batches) {
          for (const cmd of commands) {
            if (cmd.op === "set" && cmd.path.length === 0) model = structuredClone(cmd.value);
            else apply(model, cmd);
          }
          const applied = await (await handle().fetch("/apply", { method: "POST", body: json(commands) })).json();
          expect(json(applied.state)).toBe(json(model));
          await sleep();
          const woken = await (await handle().fetch("/read")).json();
          expect(woken.activation).toBeGreaterThan(last);
          last = woken.activation;
          model = JSON.parse(json(model));
          expect(json(woken.state)).toBe(json(model));
        }
        if (runs % 25 === 0) {
          // Now and then the whole registry restarts on the same directory.
          await registry.shutdown();
          registry = makeRegistry();
          const reloaded = await (await handle().fetch("/read")).json();
          expect(json(reloaded.state)).toBe(json(model));
        }
        await sleep();
      }),
      150,
    );
  }, 60_000);
});
