import { compareBytes, utf8 } from "../common/bytes.ts";
import { SeededRandom } from "../common/random.ts";
import { assertEquals } from "../common/test_helpers.ts";
import { EntryKind } from "./internal_key.ts";
import { Memtable } from "./memtable.ts";

Deno.test("memtable: random inserts iterate in internal-key order; gets see the right version", () => {
  const r = new SeededRandom(5);
  const m = new Memtable(1);
  const model = new Map<string, Map<number, string>>();
  for (let i = 0; i < 5_000; i++) {
    const k = `k${r.nextInt(300)}`;
    const v = 1 + r.nextInt(50);
    const val = `v${i}`;
    m.put(utf8(k), v, EntryKind.put, utf8(val), 0);
    if (!model.has(k)) model.set(k, new Map());
    model.get(k)!.set(v, val);
  }
  const it = m.iterator();
  it.seek(undefined);
  const seen: [string, number][] = [];
  while (it.valid()) {
    seen.push([new TextDecoder().decode(it.entry().key), it.entry().version]);
    it.next();
  }
  const want: [string, number][] = [];
  for (const [k, vs] of model) for (const v of vs.keys()) want.push([k, v]);
  want.sort((a, b) => compareBytes(utf8(a[0]), utf8(b[0])) || b[1] - a[1]);
  assertEquals(seen, want);
  assertEquals(m.count, want.length);
  for (const [k, vs] of model) {
    for (let at = 0; at <= 51; at += 7) {
      let best = -1;
      for (const v of vs.keys()) if (v <= at && v > best) best = v;
      const got = m.get(utf8(k), at);
      assertEquals(got?.version, best < 0 ? undefined : best, `${k} at ${at}`);
      if (got) assertEquals(new TextDecoder().decode(got.value), vs.get(best));
    }
  }
});

Deno.test("memtable: seek lands on the newest version at or below the target", () => {
  const m = new Memtable(1);
  for (const v of [3, 9, 5]) m.put(utf8("a"), v, EntryKind.put, utf8(`a${v}`), 0);
  m.put(utf8("b"), 1, EntryKind.delete, new Uint8Array(0), 0);
  const it = m.iterator();
  it.seek(utf8("a"), 6);
  assertEquals(it.entry().version, 5);
  it.next();
  assertEquals(it.entry().version, 3);
  it.next();
  assertEquals(it.entry().kind, EntryKind.delete);
  it.next();
  assertEquals(it.valid(), false);
});

Deno.test("memtable: an iterator stays correct while inserts split leaves under it", () => {
  const r = new SeededRandom(11);
  const m = new Memtable(1);
  const before = new Set<string>();
  for (let i = 0; i < 2_000; i++) {
    const k = `k${String(r.nextInt(100_000)).padStart(6, "0")}`;
    m.put(utf8(k), 1, EntryKind.put, utf8("v"), 0);
    before.add(k);
  }
  const it = m.iterator();
  it.seek(undefined);
  const seen: string[] = [];
  while (it.valid()) {
    seen.push(new TextDecoder().decode(it.entry().key));
    for (let j = 0; j < 3; j++) {
      m.put(
        utf8(`k${String(r.nextInt(100_000)).padStart(6, "0")}`),
        2,
        EntryKind.put,
        utf8("w"),
        0,
      );
    }
    it.next();
  }
  for (let i = 1; i < seen.length; i++) {
    if (!(seen[i - 1] < seen[i] || (seen[i - 1] === seen[i]))) {
      throw new Error(`order broken at ${i}`);
    }
  }
  const seenSet = new Set(seen);
  for (const k of before) if (!seenSet.has(k)) throw new Error(`lost ${k}`);
});

Deno.test("memtable: values given as ranges of a shared buffer read back, also after a replay", () => {
  const m = new Memtable(1);
  const source = new TextEncoder().encode("..alpha..beta..");
  const key = (s: string) => new TextEncoder().encode(s);
  const text = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : undefined);
  m.putFrom(key("a"), 1, EntryKind.put, source, 2, 5, 0);
  m.putFrom(key("b"), 2, EntryKind.put, source, 9, 4, 0);
  m.putFrom(key("e"), 3, EntryKind.put, source, 7, 0, 0);
  assertEquals(text(m.get(key("a"), 10)?.value), "alpha");
  assertEquals(text(m.get(key("b"), 10)?.value), "beta");
  assertEquals(m.get(key("e"), 10)?.value.length, 0);
  // The same key and version again (a Raft replay): the entry takes the new value.
  m.putFrom(key("a"), 1, EntryKind.put, source, 9, 4, 0);
  assertEquals(text(m.get(key("a"), 10)?.value), "beta");
  assertEquals(m.count, 3);
  const it = m.iterator();
  it.seek(undefined);
  const seen: string[] = [];
  for (; it.valid(); it.next()) seen.push(`${text(it.entry().key)}=${text(it.entry().value)}`);
  assertEquals(seen, ["a=beta", "b=beta", "e="]);
});
