/**
 * A flag given twice (`--peers a --peers b`) is a mistake a parser would
 * otherwise resolve silently by keeping the last value; both executables
 * refuse it instead, naming the flag.
 *
 * @module
 */

/** An option token as node:util parseArgs reports it with `tokens: true`. */
interface OptionToken {
  kind: string;
  name?: string;
}

/**
 * The message for the first option given more than once, or undefined.
 * Options in `repeatable` (those declared `multiple`) may repeat.
 */
export function repeatedOption(
  tokens: readonly OptionToken[],
  repeatable: ReadonlySet<string> = new Set(),
): string | undefined {
  const seen = new Set<string>();
  for (const t of tokens) {
    if (t.kind !== "option" || t.name === undefined || repeatable.has(t.name)) continue;
    if (seen.has(t.name)) return `--${t.name} is given more than once`;
    seen.add(t.name);
  }
  return undefined;
}
