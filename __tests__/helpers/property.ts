import fc from "fast-check";

/**
 * Runs a fast-check property `numRuns` times. Every run draws a seed (FC_SEED fixes it) and a
 * failure names it with the shrunk path, as the command that replays exactly that case:
 * `FC_SEED=… FC_PATH=… npx jest <file> -t <test>`. FC_RUNS_SCALE multiplies numRuns for a
 * longer hunt (e.g. FC_RUNS_SCALE=20 before a release); FC_NO_SHRINK reports the first failure as found.
 */
export async function checkProperty<Ts>(property: fc.IRawProperty<Ts>, numRuns: number): Promise<void> {
  const seed = process.env.FC_SEED === undefined ? (Date.now() ^ (Math.random() * 0x100000000)) | 0 : Number(process.env.FC_SEED);
  const scale = Number(process.env.FC_RUNS_SCALE ?? 1);
  const details = await fc.check(property, {
    numRuns: Math.max(1, Math.round(numRuns * scale)),
    seed,
    path: process.env.FC_PATH,
    endOnFailure: process.env.FC_PATH !== undefined || process.env.FC_NO_SHRINK !== undefined,
  });
  if (!details.failed) return;
  const path = details.counterexamplePath ?? "";
  throw new Error(
    `${fc.defaultReportMessage(details)}\n\nReplay: FC_SEED=${details.seed} FC_PATH="${path}" npx jest ${expect.getState().testPath ?? ""} -t ${JSON.stringify(expect.getState().currentTestName ?? "")}`,
  );
}

/** Any UTF-16 code units, lone surrogates and controls included. */
export const codeUnits = (maxLength = 12) =>
  fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength }).map((codes) => String.fromCharCode(...codes));

/** Strings built from the pieces that break parsers (slashes, dots, escapes, controls), mixed with any code units. */
export function tricky(pieces: string[], maxLength = 12): fc.Arbitrary<string> {
  return fc.array(fc.oneof(fc.constantFrom(...pieces), codeUnits(3)), { maxLength }).map((parts) => parts.join(""));
}

/** JSON data without `__proto__` keys (which assignment would turn into a prototype), at most `depth` levels. */
export function jsonData(depth = 4): fc.Arbitrary<unknown> {
  const key = fc.oneof(fc.constantFrom("a", "b", "c", "0", "1", "length", "constructor"), codeUnits(4)).filter((k) => k !== "__proto__");
  const leaf = fc.oneof(
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    codeUnits(8),
  );
  const { value } = fc.letrec<{ value: unknown }>((tie) => ({
    value: fc.oneof(
      { depthSize: "small", maxDepth: depth },
      leaf,
      fc.array(tie("value"), { maxLength: 4 }),
      fc.dictionary(key, tie("value"), { maxKeys: 4, noNullPrototype: true }),
    ),
  }));
  return value;
}
