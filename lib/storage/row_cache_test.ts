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

const text = (b: Uint8Array | undefined) =>
  b === undefined ? undefined : new TextDecoder().decode(b);

Deno.test("row cache: a key is matched by all its bytes; a later key under the same hash evicts it", () => {
  const c = new RowCache(1 << 20);
  c.put(7, entry("a", 1, "one"));
  assertEquals(text(c.get(utf8("a"), 7)?.value), "one");
  assertEquals(c.get(utf8("b"), 7), undefined, "another key under the same hash");
  c.put(7, entry("b", 2, "two"));
  assertEquals([c.get(utf8("b"), 7)?.version, c.get(utf8("a"), 7)], [2, undefined]);
  // Keys that differ only by a trailing zero or past their first 16 bytes.
  c.put(9, entry("ab", 4, "short"));
  assertEquals(c.get(new Uint8Array([0x61, 0x62, 0]), 9), undefined);
  c.put(11, entry("0123456789abcdefX", 5, "long"));
  assertEquals(c.get(utf8("0123456789abcdefY"), 11), undefined);
  assertEquals(c.get(utf8("0123456789abcdefX"), 11)!.version, 5);
  assertEquals(c.get(utf8("ab"), 9)!.version, 4);
  // Only the low 30 bits of the hash name the entry (bloomHash gives 32).
  assertEquals(c.get(utf8("ab"), 9 + (3 << 30))!.version, 4);
  c.put(7, entry("b", 3, "three"));
  assertEquals(text(c.get(utf8("b"), 7)?.value), "three");
  assertEquals([c.hits, c.misses], [6, 4]);
  c.clear();
  assertEquals([c.get(utf8("b"), 7), c.bytes], [undefined, 0]);
});

Deno.test("row cache: it keeps copies, stays within its budget and keeps the keys still read", () => {
  const c = new RowCache(4_000);
  const source = entry("k0", 1, "v");
  c.put(0, source);
  source.value[0] = 0; // the caller's buffer (a cached block) may be reused
  assertEquals(text(c.get(utf8("k0"), 0)?.value), "v");
  for (let i = 1; i < 200; i++) {
    c.put(i, entry(`k${i}`, i, "x".repeat(20)));
    assertTrue(c.get(utf8("k0"), 0) !== undefined, `k0, read after every put, is kept (${i})`);
    assertTrue(c.bytes <= 4_000, `bytes ${c.bytes}`);
  }
  assertEquals(c.get(utf8("k1"), 1), undefined, "an old key nobody read went");
  assertTrue(c.get(utf8("k199"), 199) !== undefined, "the newest stays");
  c.put(1, entry("huge", 1, "y".repeat(2_500)));
  assertEquals(c.get(utf8("huge"), 1), undefined, "an entry over half the budget is not kept");
});

Deno.test("row cache: getMany answers what get answers, at the version asked, and fills only gaps", () => {
  const c = new RowCache(3_000);
  for (let i = 0; i < 40; i++) c.put(1000 + i, entry(`key${i}`, 10 + i, `value${i}`));
  const keys = [0, 5, 39, 20, 7, 99].map((i) => utf8(`key${i}`));
  const hashes = [0, 5, 39, 20, 7, 99].map((i) => 1000 + i);
  const expected = keys.map((k, i) => c.get(k, hashes[i]));
  assertTrue(expected[0] === undefined && expected[2] !== undefined, "some went, some stayed");
  const already = entry("key20", 99, "from a memtable");
  const found: (ReturnType<typeof c.get>)[] = [undefined, undefined, undefined, already];
  found.length = keys.length;
  c.getMany(keys, hashes, 48, found);
  assertEquals(found[3], already, "an answer the caller had is kept");
  assertEquals(found[2], undefined, "version 49 is newer than the read's 48");
  for (const i of [0, 1, 4, 5]) {
    assertEquals(text(found[i]?.value), text(expected[i]?.value), `key ${i}`);
  }
  c.getMany(keys, hashes, 49, found);
  assertEquals(text(found[2]?.value), "value39");
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
    // Many keys share hash 42 and evict each other; long keys share their first 21 bytes.
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
