/**
 * Redis glob patterns for SCAN MATCH and KEYS: `*`, `?`, `[abc]`, `[a-z]`,
 * `[^a]` and `\` escapes, matched on bytes. `literalPrefix` gives the bytes
 * before the first wildcard, so a `user:*` pattern becomes a prefix range
 * scan instead of a filter over the whole key space.
 *
 * @module
 */

const STAR = 0x2a;
const QUESTION = 0x3f;
const OPEN = 0x5b;
const CLOSE = 0x5d;
const BACKSLASH = 0x5c;
const CARET = 0x5e;
const DASH = 0x2d;

/** The bytes every key matching `pattern` starts with. */
export function literalPrefix(pattern: Uint8Array): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const b = pattern[i];
    if (b === STAR || b === QUESTION || b === OPEN) break;
    if (b === BACKSLASH && i + 1 < pattern.length) out.push(pattern[++i]);
    else out.push(b);
  }
  return new Uint8Array(out);
}

/**
 * Matches `key` against a glob `pattern`. Every token other than `*`
 * matches exactly one byte, so a mismatch only needs to go back to the last
 * `*` and let it take one more byte: at most pattern x key steps. (A
 * recursive matcher takes exponential time on patterns such as
 * `*a*a*a*a*a*a*b`, Redis's CVE-2022-36021: one KEYS could stall a node.)
 */
export function globMatch(pattern: Uint8Array, key: Uint8Array): boolean {
  let p = 0;
  let k = 0;
  /** Pattern position just after the last `*` seen, and the key position it resumes at. */
  let starP = -1;
  let starK = 0;
  while (k < key.length) {
    if (p < pattern.length) {
      if (pattern[p] === STAR) {
        while (p < pattern.length && pattern[p] === STAR) p++;
        if (p === pattern.length) return true;
        starP = p;
        starK = k;
        continue;
      }
      const next = matchToken(pattern, p, key[k]);
      if (next >= 0) {
        p = next;
        k++;
        continue;
      }
    }
    if (starP < 0) return false;
    // Let the last `*` take one more byte and try the rest of the pattern again from there.
    p = starP;
    k = ++starK;
  }
  while (p < pattern.length && pattern[p] === STAR) p++;
  return p === pattern.length;
}

/**
 * Matches one byte against the token at `p` (not a `*`): the position after
 * the token, or -1 when the byte does not match.
 */
function matchToken(pattern: Uint8Array, p: number, b: number): number {
  const c = pattern[p];
  if (c === QUESTION) return p + 1;
  if (c === OPEN) {
    let i = p + 1;
    const negate = pattern[i] === CARET;
    if (negate) i++;
    let matched = false;
    while (i < pattern.length && pattern[i] !== CLOSE) {
      if (pattern[i] === BACKSLASH && i + 1 < pattern.length) {
        if (pattern[i + 1] === b) matched = true;
        i += 2;
      } else if (i + 2 < pattern.length && pattern[i + 1] === DASH) {
        // As Redis: `]` may end a range ([b-] is the range ] to b, and the class runs on).
        const lo = Math.min(pattern[i], pattern[i + 2]);
        const hi = Math.max(pattern[i], pattern[i + 2]);
        if (b >= lo && b <= hi) matched = true;
        i += 3;
      } else {
        if (pattern[i] === b) matched = true;
        i++;
      }
    }
    // An unclosed class ends the pattern.
    return matched === negate ? -1 : Math.min(i + 1, pattern.length);
  }
  if (c === BACKSLASH && p + 1 < pattern.length) return pattern[p + 1] === b ? p + 2 : -1;
  return c === b ? p + 1 : -1;
}
