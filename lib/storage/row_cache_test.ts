import { utf8 } from "../common/bytes.ts";
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { EntryKind } from "./internal_key.ts";
import { RowCache } from "./row_cache.ts";

const entry = (key: string, version: number, value: string) => ({
  key: utf8(key),
  version,
  kind: EntryKind.put,
  value: utf8(value),
  expiresAtMs: 0,
});

Deno.test("row cache: keys sharing a hash are told apart; an entry is replaced in place", () => {
  const c = new RowCache(1 << 20);
  c.put(7, entry("a", 1, "one"));
  c.put(7, entry("b", 2, "two"));
  assertEquals(new TextDecoder().decode(c.get(utf8("a"), 7)!.value), "one");
  assertEquals(c.get(utf8("b"), 7)!.version, 2);
  assertEquals(c.get(utf8("c"), 7), undefined);
  const before = c.bytes;
  c.put(7, entry("a", 3, "three"));
  assertEquals([c.get(utf8("a"), 7)!.version, c.bytes], [3, before + 2]);
  assertEquals([c.hits, c.misses], [3, 1]);
  c.clear();
  assertEquals([c.get(utf8("a"), 7), c.bytes], [undefined, 0]);
});

Deno.test("row cache: it keeps copies and stays within its budget, oldest out first", () => {
  const c = new RowCache(2_000);
  const source = entry("k0", 1, "v");
  c.put(0, source);
  source.value[0] = 0; // the caller's buffer (a cached block) may be reused
  assertEquals(new TextDecoder().decode(c.get(utf8("k0"), 0)!.value), "v");
  for (let i = 1; i < 100; i++) c.put(i, entry(`k${i}`, i, "x".repeat(20)));
  assertTrue(c.bytes <= 2_000, `bytes ${c.bytes}`);
  assertEquals(c.get(utf8("k0"), 0), undefined, "the oldest went first");
  assertTrue(c.get(utf8("k99"), 99) !== undefined, "the newest stays");
  c.put(1, entry("huge", 1, "y".repeat(5_000)));
  assertEquals(c.get(utf8("huge"), 1), undefined, "an entry larger than the budget is not kept");
});
