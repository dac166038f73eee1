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
  // Keys equal in their zero-padded first 16 bytes differ by length or by what follows.
  c.put(9, entry("ab", 4, "short"));
  assertEquals(c.get(new Uint8Array([0x61, 0x62, 0]), 9), undefined);
  c.put(9, entry("0123456789abcdefX", 5, "long"));
  assertEquals(c.get(utf8("0123456789abcdefY"), 9), undefined);
  assertEquals(c.get(utf8("0123456789abcdefX"), 9)!.version, 5);
  assertEquals(c.get(utf8("ab"), 9)!.version, 4);
  const before = c.bytes;
  c.put(7, entry("a", 3, "three"));
  assertEquals([c.get(utf8("a"), 7)!.version, c.bytes], [3, before + 2]);
  assertEquals([c.hits, c.misses], [5, 3]);
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

Deno.test("row cache: random puts, replacements and evictions never return a stale or torn entry", () => {
  const seed = Number(Deno.env.get("ROW_CACHE_SEED") ?? Date.now() % 1_000_000);
  console.log(`row cache seed ${seed} (replay: ROW_CACHE_SEED=${seed})`);
  let state = seed;
  const rnd = (n: number) => {
    state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff;
    return state % n;
  };
  // A small budget, so entries are evicted often, with values from empty to a fifth of it.
  const capacity = 4_096 + rnd(4_096);
  const c = new RowCache(capacity);
  const latest = new Map<string, { version: number; value: string }>();
  let version = 0;
  for (let step = 0; step < 50_000; step++) {
    // Many keys share hash 42, so probe runs are long and deletions shift them.
    // Short keys are matched by the row's words alone; long ones share their first 16 bytes.
    const n = rnd(300);
    const name = n % 3 === 0 ? `a-long-shared-prefix/${n}` : `k${n}`;
    // Unsigned 32-bit hashes as bloomHash gives (half of them above 2^31).
    const hash = rnd(4) === 0 ? 42 : Math.imul(n + 1, 0x9e3779b1) >>> 0;
    if (rnd(3) === 0) {
      const value = String.fromCharCode(97 + rnd(26)).repeat(rnd(5) === 0 ? rnd(900) : rnd(40));
      version++;
      c.put(hash, entry(name, version, value));
      latest.set(`${hash}/${name}`, { version, value });
    } else {
      const got = c.get(utf8(name), hash);
      const want = latest.get(`${hash}/${name}`);
      if (got === undefined) continue; // evicted, or never put: both allowed
      const at = `seed ${seed} step ${step} ${name}`;
      assertTrue(want !== undefined, `${at}: returned a key never put under this hash`);
      assertEquals(
        [got.version, new TextDecoder().decode(got.value), new TextDecoder().decode(got.key)],
        [want!.version, want!.value, name],
        at,
      );
    }
    assertTrue(c.bytes <= capacity, `seed ${seed} step ${step}: ${c.bytes} bytes`);
  }
  assertTrue(c.hits > 1_000, `seed ${seed}: only ${c.hits} hits`);
});
