/** SCAN/KEYS glob matching and SCAN cursors. */
import { assertEquals, assertThrows } from "../../lib/common/test_helpers.ts";
import { globMatch, literalPrefix } from "../../lib/resp/glob.ts";
import { ScanCursors } from "../../lib/resp/scan_cursor.ts";
import { ReplyError } from "../../lib/resp/command_table.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const m = (p: string, k: string) => globMatch(enc.encode(p), enc.encode(k));

Deno.test("glob: wildcards, classes and escapes", () => {
  assertEquals(m("*", ""), true);
  assertEquals(m("user:*", "user:1"), true);
  assertEquals(m("user:*", "users"), false);
  assertEquals(m("h?llo", "hello"), true);
  assertEquals(m("h[ae]llo", "hallo"), true);
  assertEquals(m("h[^e]llo", "hello"), false);
  assertEquals(m("h[a-c]llo", "hbllo"), true);
  assertEquals(m("a\\*b", "a*b"), true);
  assertEquals(m("a\\*b", "axb"), false);
  assertEquals(m("*:1*", "user:12"), true);
  assertEquals(dec.decode(literalPrefix(enc.encode("us\\*er:*x"))), "us*er:");
  // As Redis: `]` may end a range, [b-] is ] to b (and the class then runs to the pattern's end).
  assertEquals(["p:-", "p:]", "p:a", "p:b", "p:c"].filter((k) => m("p:[b-]", k)), [
    "p:]",
    "p:a",
    "p:b",
  ]);
});

/** The matcher's definition by recursion (exponential on some patterns: small inputs only). */
function referenceMatch(pattern: Uint8Array, key: Uint8Array, p = 0, k = 0): boolean {
  if (p === pattern.length) return k === key.length;
  const c = pattern[p];
  if (c === 0x2a) {
    for (let i = k; i <= key.length; i++) if (referenceMatch(pattern, key, p + 1, i)) return true;
    return false;
  }
  if (k === key.length) return false;
  if (c === 0x3f) return referenceMatch(pattern, key, p + 1, k + 1);
  if (c === 0x5b) {
    let i = p + 1;
    const negate = pattern[i] === 0x5e;
    if (negate) i++;
    let matched = false;
    while (i < pattern.length && pattern[i] !== 0x5d) {
      if (pattern[i] === 0x5c && i + 1 < pattern.length) {
        matched ||= pattern[i + 1] === key[k];
        i += 2;
      } else if (i + 2 < pattern.length && pattern[i + 1] === 0x2d) {
        const [lo, hi] = [
          Math.min(pattern[i], pattern[i + 2]),
          Math.max(pattern[i], pattern[i + 2]),
        ];
        matched ||= key[k] >= lo && key[k] <= hi;
        i += 3;
      } else {
        matched ||= pattern[i] === key[k];
        i++;
      }
    }
    return matched !== negate &&
      referenceMatch(pattern, key, Math.min(i + 1, pattern.length), k + 1);
  }
  if (c === 0x5c && p + 1 < pattern.length) {
    return pattern[p + 1] === key[k] && referenceMatch(pattern, key, p + 2, k + 1);
  }
  return c === key[k] && referenceMatch(pattern, key, p + 1, k + 1);
}

Deno.test("glob: agrees with the recursive definition on random patterns and keys", () => {
  const seed = Number(Deno.env.get("GLOB_SEED") ?? Date.now() % 1_000_000);
  console.log(`glob seed ${seed} (replay: GLOB_SEED=${seed})`);
  let state = seed;
  const rnd = (n: number) => {
    state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff;
    return state % n;
  };
  const tokens = ["a", "b", "*", "**", "?", "[ab]", "[^a]", "[a-b]", "\\*", "\\a", "[", "]", "-"];
  for (let n = 0; n < 20_000; n++) {
    let pattern = "";
    for (let i = rnd(6); i >= 0; i--) pattern += tokens[rnd(tokens.length)];
    let key = "";
    for (let i = rnd(8); i > 0; i--) key += "ab*[-"[rnd(5)];
    const [p, k] = [enc.encode(pattern), enc.encode(key)];
    assertEquals(globMatch(p, k), referenceMatch(p, k), `seed ${seed}: ${pattern} vs ${key}`);
  }
});

Deno.test("glob: a pattern with many stars against a long key takes linear-ish time", () => {
  // Backtracking into every star made this exponential (Redis CVE-2022-36021).
  const key = enc.encode("a".repeat(4_000));
  const started = performance.now();
  assertEquals(globMatch(enc.encode("*a*a*a*a*a*a*a*a*a*a*b"), key), false);
  assertEquals(globMatch(enc.encode("*a*a*a*a*a*a*a*a*a*a*"), key), true);
  const ms = performance.now() - started;
  assertEquals(ms < 1_000, true, `took ${ms.toFixed(0)} ms`);
});

Deno.test("scan cursors: small numbers for any key, resumed where their page ended", () => {
  const cursors = new ScanCursors();
  const keys = [new Uint8Array([0, 0, 1]), enc.encode("user:1"), new Uint8Array(4_096).fill(255)];
  const issued = keys.map((k) => cursors.issue(k));
  for (const [i, c] of issued.entries()) {
    assertEquals(/^[1-9]\d*$/.test(c), true, c);
    const n = BigInt(c);
    assertEquals(n >= 1n << 62n && n < 1n << 63n, true, `${c} fits a signed 64-bit integer`);
    assertEquals(cursors.resume(c), keys[i]);
    assertEquals(cursors.resume(c), keys[i], "a retried call may reuse its cursor");
  }
  assertEquals(new Set(issued).size, 3);
  assertEquals(cursors.resume("0"), undefined);
  for (const bad of ["abc", "2", "-1", "", String(1n << 62n)]) {
    assertThrows(() => cursors.resume(bad), ReplyError, "invalid cursor");
  }
});

Deno.test("scan cursors: the least recently used go first, by count and by bytes", () => {
  const byCount = new ScanCursors(3, 1 << 20);
  const [a, b, c] = ["a", "b", "c"].map((k) => byCount.issue(enc.encode(k)));
  byCount.resume(a); // a is now the most recently used
  const d = byCount.issue(enc.encode("d"));
  assertEquals(byCount.size, 3);
  assertThrows(() => byCount.resume(b), ReplyError, "invalid cursor");
  for (const [cursor, key] of [[a, "a"], [c, "c"], [d, "d"]]) {
    assertEquals(dec.decode(byCount.resume(cursor)), key);
  }
  const byBytes = new ScanCursors(1_000, 3 * (1_000 + 96));
  const big = Array.from({ length: 4 }, (_, i) => byBytes.issue(new Uint8Array(1_000).fill(i)));
  assertEquals(byBytes.size, 3);
  assertThrows(() => byBytes.resume(big[0]), ReplyError, "invalid cursor");
  // A key larger than the whole budget still gets its cursor (the others go).
  const huge = byBytes.issue(new Uint8Array(10_000));
  assertEquals(byBytes.size, 1);
  assertEquals(byBytes.resume(huge)?.length, 10_000);
});

Deno.test("scan cursors: a scan holds two cursors, however many pages it reads", () => {
  const cursors = new ScanCursors();
  let cursor = "0";
  const issued: string[] = [];
  for (let page = 0; page < 50; page++) {
    cursors.resume(cursor);
    cursor = cursors.issue(enc.encode(`key${page}`), cursor);
    issued.push(cursor);
    assertEquals(cursors.size <= 2, true, `page ${page}: ${cursors.size} cursors held`);
  }
  // The last call can be retried (its reply may have been lost); older cursors are gone.
  assertThrows(() => cursors.resume(issued[47]), ReplyError, "invalid cursor");
  assertEquals(dec.decode(cursors.resume(issued[48])), "key48");
  // Going on from the newest cursor retires the one before it.
  assertEquals(dec.decode(cursors.resume(issued[49])), "key49");
  assertThrows(() => cursors.resume(issued[48]), ReplyError, "invalid cursor");
});
