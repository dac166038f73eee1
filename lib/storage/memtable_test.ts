import { compareBytes, utf8 } from "../common/bytes.ts";
import { SeededRandom } from "../common/random.ts";
import { assertEquals } from "../common/test_helpers.ts";
import { type Entry, EntryKind } from "./internal_key.ts";
import { keyHash, Memtable } from "./memtable.ts";

/**
 * Inserts 5,000 random (key, version) pairs from `keys`, then checks the
 * iteration order and point reads at many versions against a model.
 */
function checkAgainstModel(
  seed: number,
  keys: Uint8Array[],
  nextVersion: (r: SeededRandom, i: number) => number = (r) => 1 + r.nextInt(50),
  inserts = 5_000,
): void {
  const r = new SeededRandom(seed);
  const m = new Memtable(1);
  const model = new Map<string, { key: Uint8Array; versions: Map<number, string> }>();
  let maxVersion = 0;
  for (let i = 0; i < inserts; i++) {
    const k = keys[r.nextInt(keys.length)];
    const v = nextVersion(r, i);
    maxVersion = Math.max(maxVersion, v);
    const val = `v${i}`;
    m.put(k, v, EntryKind.put, utf8(val), 0);
    const ks = k.join(",");
    if (!model.has(ks)) model.set(ks, { key: k, versions: new Map() });
    model.get(ks)!.versions.set(v, val);
  }
  const it = m.iterator();
  it.seek(undefined);
  const seen: [string, number][] = [];
  while (it.valid()) {
    seen.push([it.entry().key.join(","), it.entry().version]);
    it.next();
  }
  const want: [Uint8Array, number][] = [];
  for (const { key, versions } of model.values()) {
    for (const v of versions.keys()) want.push([key, v]);
  }
  want.sort((a, b) => compareBytes(a[0], b[0]) || b[1] - a[1]);
  assertEquals(seen, want.map(([k, v]) => [k.join(","), v]), `seed ${seed}`);
  // With a horizon: of each key, the versions above it and the newest at or below it.
  const horizon = r.nextInt(maxVersion + 1);
  const flushing = m.iterator(horizon);
  flushing.seek(undefined);
  const kept: [string, number][] = [];
  for (; flushing.valid(); flushing.next()) {
    kept.push([flushing.entry().key.join(","), flushing.entry().version]);
  }
  const wantKept = want.filter(([k, v], i) =>
    v > horizon || i === 0 || compareBytes(want[i - 1][0], k) !== 0 || want[i - 1][1] > horizon
  );
  assertEquals(kept, wantKept.map(([k, v]) => [k.join(","), v]), `seed ${seed} horizon ${horizon}`);
  assertEquals(m.count, want.length);
  const step = Math.max(7, Math.floor(maxVersion / 8));
  for (const { key, versions } of model.values()) {
    for (let at = 0; at <= maxVersion + 1; at += step) {
      let best = -1;
      for (const v of versions.keys()) if (v <= at && v > best) best = v;
      const got = m.get(key, at);
      assertEquals(got?.version, best < 0 ? undefined : best, `seed ${seed}: ${key} at ${at}`);
      if (got) assertEquals(new TextDecoder().decode(got.value), versions.get(best));
    }
  }
  // getMany answers every key as get does (absent keys too), in one call for all of them.
  const probe = [...[...model.values()].map((x) => x.key), utf8("absent"), utf8("")];
  const answer = (e: { version: number; value: Uint8Array } | undefined) =>
    e === undefined ? "-" : `${e.version}:${new TextDecoder().decode(e.value)}`;
  for (let at = 0; at <= maxVersion + 1; at += step) {
    const many: (Entry | undefined)[] = [];
    m.getMany(probe, at, many);
    assertEquals(many.map(answer), probe.map((k) => answer(m.get(k, at))), `seed ${seed} at ${at}`);
  }
}

/** Two keys of one length, differing only past the summarized prefix, with one keyHash. */
function hashSharingKeys(prefixLength = 20, suffixLength = 5): [Uint8Array, Uint8Array] {
  const prefix = "p".repeat(prefixLength);
  const byHash = new Map<number, Uint8Array>();
  for (let i = 0; i < 1_000_000; i++) {
    const k = utf8(prefix + i.toString(36).padStart(suffixLength, "0"));
    const other = byHash.get(keyHash(k));
    if (other !== undefined) return [other, k];
    byHash.set(keyHash(k), k);
  }
  throw new Error("no hash collision found");
}

Deno.test("memtable: random inserts iterate in internal-key order; gets see the right version", () => {
  const keys: Uint8Array[] = [];
  for (let i = 0; i < 300; i++) keys.push(utf8(`k${i}`));
  checkAgainstModel(5, keys);
});

Deno.test("memtable: updates with rising versions (the fast path), replays and hash-sharing keys", () => {
  // Like the state machine: each write a new, higher version, mostly of keys
  // already present; one write in ten re-applies an older or equal version
  // (a replay). Two keys share a hash, so one update in a while must not be
  // taken for the other's; 64-entry leaves fill and split under the updates.
  const keys: Uint8Array[] = [];
  for (let i = 0; i < 200; i++) keys.push(utf8(`key:${String(i).padStart(12, "0")}`));
  keys.push(...hashSharingKeys());
  for (const seed of [11, 12, 13]) {
    let version = 0;
    checkAgainstModel(
      seed,
      keys,
      (r) => r.nextInt(10) === 0 ? 1 + r.nextInt(version + 1) : ++version,
      20_000,
    );
  }
});

Deno.test("memtable: keys around the summarized prefix length order bytewise", () => {
  // Lengths 0..40 over the bytes 0x00, 0x01 and 0xff: many keys are
  // prefixes of others, differ only past byte 18, or only by trailing zeros
  // (which the zero-padded prefix words cannot tell apart).
  for (const seed of [1, 2, 3, 4]) {
    const r = new SeededRandom(seed);
    const keys: Uint8Array[] = [];
    const alphabet = [0x00, 0x01, 0xff];
    for (let i = 0; i < 400; i++) {
      const k = new Uint8Array(r.nextInt(41));
      for (let j = 0; j < k.length; j++) k[j] = alphabet[r.nextInt(j < 16 ? 1 : 3)];
      keys.push(k);
    }
    checkAgainstModel(seed, keys);
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

Deno.test("memtable: keys and values given as ranges of a buffer are copied, also on a replay", () => {
  const m = new Memtable(1);
  //                                       0123456789012345678
  const source = new TextEncoder().encode("abe..alpha..beta..");
  const key = (s: string) => new TextEncoder().encode(s);
  const text = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : undefined);
  m.putFrom(source, 0, 1, source, 5, 5, 1, EntryKind.put, 0);
  m.putFrom(source, 1, 1, source, 12, 4, 2, EntryKind.put, 0);
  m.putFrom(source, 2, 1, source, 10, 0, 3, EntryKind.put, 0);
  assertEquals(text(m.get(key("a"), 10)?.value), "alpha");
  assertEquals(text(m.get(key("b"), 10)?.value), "beta");
  assertEquals(m.get(key("e"), 10)?.value.length, 0);
  // The caller may reuse its buffer: what was stored does not change.
  const before = m.get(key("a"), 10)!;
  source.fill(0x2e);
  assertEquals(text(m.get(key("a"), 10)?.value), "alpha");
  // The same key and version again (a Raft replay): the entry takes the new
  // value; an entry read before keeps what it showed.
  m.put(key("a"), 1, EntryKind.put, key("omega"), 0);
  assertEquals(text(m.get(key("a"), 10)?.value), "omega");
  assertEquals(text(before.value), "alpha");
  assertEquals(m.count, 3);
  const it = m.iterator();
  it.seek(undefined);
  const seen: string[] = [];
  for (; it.valid(); it.next()) seen.push(`${text(it.entry().key)}=${text(it.entry().value)}`);
  assertEquals(seen, ["a=omega", "b=beta", "e="]);
});

Deno.test("memtable: keys sharing a hash and a long prefix both read back", () => {
  // Two keys of one length that share a hash and differ only past the summarized prefix, or
  // only in its last, middle or first word: the newest-entry index must not take one for the
  // other.
  const pairs = [
    hashSharingKeys(),
    hashSharingKeys(13, 5),
    hashSharingKeys(7, 5),
    hashSharingKeys(0, 6),
  ];
  for (const pair of pairs) {
    for (const order of [[0, 1], [1, 0]]) {
      const m = new Memtable(1);
      m.put(pair[order[0]], 1, EntryKind.put, utf8("first"), 0);
      m.put(pair[order[1]], 2, EntryKind.put, utf8("second"), 0);
      m.put(pair[order[0]], 3, EntryKind.put, utf8("third"), 0);
      assertEquals(new TextDecoder().decode(m.get(pair[order[0]], 10)?.value), "third");
      assertEquals(new TextDecoder().decode(m.get(pair[order[1]], 10)?.value), "second");
      assertEquals(new TextDecoder().decode(m.get(pair[order[0]], 2)?.value), "first");
    }
  }
});
