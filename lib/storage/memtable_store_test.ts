import { SeededRandom } from "../common/random.ts";
import { assertEquals } from "../common/test_helpers.ts";
import { EntryKind } from "./internal_key.ts";
import { EntryStore } from "./memtable_store.ts";

Deno.test("entry store: entries of every size read back across slabs and column growth", () => {
  const r = new SeededRandom(11);
  const store = new EntryStore();
  const want: { key: Uint8Array; value: Uint8Array; version: number }[] = [];
  // Many small entries (the columns grow past their first capacity), some values larger
  // than a slab, empty keys and values, and sources read at an offset.
  for (let i = 0; i < 3_000; i++) {
    const big = i % 500 === 7;
    const key = new Uint8Array(r.nextInt(40)).map(() => r.nextInt(256));
    const value = new Uint8Array(big ? (1 << 20) + r.nextInt(5_000) : r.nextInt(200))
      .map(() => r.nextInt(256));
    const source = new Uint8Array(3 + key.length + value.length);
    source.set(key, 3);
    source.set(value, 3 + key.length);
    const id = store.add(key.length, value.length, i + 1, EntryKind.put, 0);
    store.copyKey(id, source, 3);
    store.copyValue(id, source, 3 + key.length);
    source.fill(0); // the store keeps its own copy
    assertEquals(id, want.length);
    want.push({ key, value, version: i + 1 });
  }
  for (let id = 0; id < want.length; id++) {
    const e = store.entry(id);
    assertEquals(e.key, want[id].key, `key of ${id}`);
    assertEquals(e.value, want[id].value, `value of ${id}`);
    assertEquals(e.version, want[id].version);
    assertEquals(store.compareKey(id, want[id].key, 0, want[id].key.length, 0), 0);
  }
});

Deno.test("entry store: an empty key and value as the very first entry", () => {
  const store = new EntryStore();
  const id = store.add(0, 0, 1, EntryKind.put, 0);
  assertEquals(store.entry(id).key, new Uint8Array(0));
  assertEquals(store.entry(id).value, new Uint8Array(0));
  assertEquals(store.compareKey(id, new Uint8Array(0), 0, 0, 0), 0);
});

Deno.test("entry store: large entries take slabs of their own size, small ones keep sharing", () => {
  const store = new EntryStore();
  const sizes = [100, 600_000, 100, 400_000, 100, 900_000, 100];
  let payload = 0;
  for (const [i, size] of sizes.entries()) {
    const id = store.add(8, size, i + 1, EntryKind.put, 0);
    const bytes = new Uint8Array(8 + size).fill(i + 1);
    store.copyKey(id, bytes, 0);
    store.copyValue(id, bytes, 8);
    payload += 8 + size;
  }
  const held = store.slabs.reduce((n, s) => n + s.length, 0);
  // Three slabs of exactly their entry's size, and one small shared slab for the rest.
  assertEquals(store.slabs.length, 4);
  assertEquals(held - payload < 4_096, true, `${held} bytes held for ${payload}`);
  for (let id = 0; id < sizes.length; id++) {
    const slab = store.slabFor(id);
    const at = store.keyAt[id];
    assertEquals([slab[at], slab[at + 8 + sizes[id] - 1]], [id + 1, id + 1]);
  }
});
