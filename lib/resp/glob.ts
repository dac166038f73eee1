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

/** Matches `key` against a glob `pattern`. */
export function globMatch(pattern: Uint8Array, key: Uint8Array, p = 0, k = 0): boolean {
  while (p < pattern.length) {
    const c = pattern[p];
    if (c === STAR) {
      while (p + 1 < pattern.length && pattern[p + 1] === STAR) p++;
      if (p + 1 === pattern.length) return true;
      for (let i = k; i <= key.length; i++) if (globMatch(pattern, key, p + 1, i)) return true;
      return false;
    }
    if (k >= key.length) return false;
    if (c === QUESTION) {
      p++;
      k++;
      continue;
    }
    if (c === OPEN) {
      let i = p + 1;
      const negate = pattern[i] === CARET;
      if (negate) i++;
      let matched = false;
      while (i < pattern.length && pattern[i] !== CLOSE) {
        if (pattern[i] === BACKSLASH && i + 1 < pattern.length) {
          if (pattern[i + 1] === key[k]) matched = true;
          i += 2;
        } else if (i + 2 < pattern.length && pattern[i + 1] === DASH && pattern[i + 2] !== CLOSE) {
          const lo = Math.min(pattern[i], pattern[i + 2]);
          const hi = Math.max(pattern[i], pattern[i + 2]);
          if (key[k] >= lo && key[k] <= hi) matched = true;
          i += 3;
        } else {
          if (pattern[i] === key[k]) matched = true;
          i++;
        }
      }
      if (matched === negate) return false;
      p = i + 1;
      k++;
      continue;
    }
    const lit = c === BACKSLASH && p + 1 < pattern.length ? pattern[++p] : c;
    if (lit !== key[k]) return false;
    p++;
    k++;
  }
  return k === key.length;
}
