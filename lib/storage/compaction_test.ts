import { utf8 } from "../common/bytes.ts";
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { writeTables } from "./compaction.ts";
import { BlockCache } from "./block_cache.ts";
import { bloomHash } from "./bloom.ts";
import { MemFileSystem } from "./mem_fs.ts";
import { TableCache } from "./table_cache.ts";
import { Memtable } from "./memtable.ts";
import { pickCompaction } from "./compaction_picker.ts";
import { collapse } from "./compaction_iterator.ts";
import { encodeInternalKey, type Entry, EntryKind, type EntryKindValue } from "./internal_key.ts";
import { Version } from "./version.ts";
import { makeFileMeta } from "./version_edit.ts";

const e = (k: string, version: number, kind: EntryKindValue = EntryKind.put): Entry => ({
  key: utf8(k),
  version,
  kind,
  value: utf8(`${k}${version}`),
  expiresAtMs: 0,
});
const show = (es: Entry[]) =>
  es.map((x) =>
    `${new TextDecoder().decode(x.key)}@${x.version}${x.kind === EntryKind.delete ? "x" : ""}`
  );

Deno.test("compaction iterator: keeps history above the horizon, newest at or below it", () => {
  const input = [
    e("a", 9),
    e("a", 7),
    e("a", 5),
    e("a", 3),
    e("b", 4, EntryKind.delete),
    e("b", 2),
    e("c", 1),
  ];
  assertEquals(show(collapse(input, { horizonVersion: 0, bottommost: true })), show(input));
  assertEquals(show(collapse(input, { horizonVersion: 6, bottommost: false })), [
    "a@9",
    "a@7",
    "a@5",
    "b@4x",
    "c@1",
  ]);
  // At the bottom a tombstone below the horizon hides nothing: it goes too.
  assertEquals(show(collapse(input, { horizonVersion: 6, bottommost: true })), [
    "a@9",
    "a@7",
    "a@5",
    "c@1",
  ]);
  // One at the horizon stays: a history read from the horizon on lists that delete.
  assertEquals(show(collapse(input, { horizonVersion: 4, bottommost: true })), [
    "a@9",
    "a@7",
    "a@5",
    "a@3",
    "b@4x",
    "c@1",
  ]);
  // Duplicate (key, version) copies from older sources are dropped.
  assertEquals(
    show(collapse([e("a", 3), e("a", 3), e("a", 2)], { horizonVersion: 0, bottommost: false })),
    ["a@3", "a@2"],
  );
});

function file(n: number, lo: string, hi: string, sizeBytes = 1000) {
  return makeFileMeta({
    number: n,
    sizeBytes,
    entryCount: 1,
    maxVersion: 1,
    smallest: encodeInternalKey(utf8(lo), 9),
    largest: encodeInternalKey(utf8(hi), 1),
  });
}

Deno.test("compaction picker: L0 at the trigger, then levels by size score", () => {
  const o = { l0CompactionTrigger: 4, l1TargetBytes: 10_000 };
  let v = Version.empty().apply({
    newFiles: [1, 2, 3].map((n) => ({ level: 0, meta: file(n, "a", "m") })).concat([
      { level: 1, meta: file(10, "a", "c") },
      { level: 1, meta: file(11, "n", "z") },
    ]),
  });
  assertEquals(pickCompaction(v, o, new Map()), undefined);
  v = v.apply({ newFiles: [{ level: 0, meta: file(4, "b", "d") }] });
  const c = pickCompaction(v, o, new Map())!;
  assertEquals([
    c.level,
    c.outputLevel,
    c.inputs.map((f) => f.number),
    c.outputInputs.map((f) => f.number),
  ], [0, 1, [4, 3, 2, 1], [10]]);
  assertEquals(c.bottommost, true);
  // L1 over its target: one file plus its overlap in L2.
  const big = Version.empty().apply({
    newFiles: [
      { level: 1, meta: file(20, "a", "f", 8_000) },
      { level: 1, meta: file(21, "g", "p", 8_000) },
      { level: 2, meta: file(30, "h", "k") },
      { level: 3, meta: file(40, "a", "b") },
    ],
  });
  const c2 = pickCompaction(big, o, new Map([[1, encodeInternalKey(utf8("f"), 1)]]))!;
  assertEquals([
    c2.level,
    c2.inputs.map((f) => f.number),
    c2.outputInputs.map((f) => f.number),
    c2.bottommost,
  ], [1, [21], [30], true]);
  const c3 = pickCompaction(big, o, new Map())!;
  assertEquals([c3.inputs.map((f) => f.number), c3.bottommost, c3.trivialMove], [
    [20],
    false,
    true,
  ]);
});

Deno.test("table build: output files are cut only between user keys, never inside one key's versions", async () => {
  // 40 keys with 1-30 versions each and a tiny file target: a file fills up
  // inside most keys' versions, and must run on to the key's last version.
  const entries: Entry[] = [];
  for (let k = 0; k < 40; k++) {
    const versions = 1 + ((k * 7) % 30);
    for (let v = versions; v >= 1; v--) entries.push(e(`key${String(k).padStart(2, "0")}`, v));
  }
  const memtable = new Memtable(1);
  for (const x of entries) memtable.put(x.key, x.version, x.kind, x.value, 0);
  const it = memtable.iterator();
  it.seek(undefined);
  const fs = new MemFileSystem();
  await fs.mkdir("/t");
  let next = 1;
  const r = await writeTables(
    {
      fs,
      dir: "/t",
      blockSizeBytes: 256,
      newFileNumber: () => next++,
      slice: { sliceMs: 1_000, restMs: 0, urgent: () => true },
    },
    it,
    undefined,
    512,
  );
  assertTrue(r.files.length > 5, `only ${r.files.length} files`);
  assertEquals(r.files.reduce((n, f) => n + f.entryCount, 0), entries.length);
  for (let i = 1; i < r.files.length; i++) {
    const before = new TextDecoder().decode(r.files[i - 1].largestKey);
    const after = new TextDecoder().decode(r.files[i].smallestKey);
    assertTrue(before < after, `file ${i} starts inside ${before}'s versions (${after})`);
  }
});

const plain = (x: Entry): Entry => ({
  key: x.key.slice(),
  version: x.version,
  kind: x.kind,
  value: x.value.slice(),
  expiresAtMs: x.expiresAtMs,
});

Deno.test("table build: a memtable flush writes the same bytes as the entry-by-entry path", async () => {
  // Keys with zero bytes (escaped in internal keys), tombstones, expiries, empty values and many
  // versions, flushed below a history horizon: once from the memtable's slabs, once through
  // Entry objects (an iterator that is not a MemtableIterator takes that path).
  const memtable = new Memtable(1);
  let version = 0;
  for (let round = 0; round < 6; round++) {
    for (let k = 0; k < 1_000; k++) {
      if ((k * 31 + round * 7) % 5 === 0) continue;
      // Some keys only get versions above the horizon: the walk leaves them by their chain's end.
      if (k % 7 === 0 && round < 4) continue;
      // Keys longer than the memtable's 18 summarized bytes too.
      const tail = k % 5 === 2 ? "-a-long-key-past-the-summary" : "";
      const key = utf8(`k${k % 3 === 0 ? "\0" : ""}${String(k).padStart(4, "0")}${tail}`);
      const kind = (k + round) % 11 === 0
        ? EntryKind.delete
        : (k + round) % 4 === 0
        ? EntryKind.putWithExpiry
        : EntryKind.put;
      // Values past copyRange's 48-byte loop, and enough bytes (over 256 KiB) that the writer
      // hands chunks to the file during the flush.
      const value = kind === EntryKind.delete || k % 9 === 0
        ? new Uint8Array(0)
        : utf8(`v${k}`.padEnd(k % 2 === 0 ? 200 : 4, "."));
      memtable.put(key, ++version, kind, value, kind === EntryKind.putWithExpiry ? 1e12 + k : 0);
    }
  }
  const horizon = Math.floor(version / 2);
  const build = async (fast: boolean) => {
    const fs = new MemFileSystem();
    await fs.mkdir("/t");
    const it = memtable.iterator(horizon);
    it.seek(undefined);
    const wrapped = {
      valid: () => it.valid(),
      entry: () => it.entry(),
      seek: (key: Uint8Array | undefined, v?: number) => it.seek(key, v),
      next: () => it.next(),
      close: () => it.close(),
    };
    const r = await writeTables(
      {
        fs,
        dir: "/t",
        blockSizeBytes: 512,
        newFileNumber: () => 1,
        slice: { sliceMs: 1_000, restMs: 0, urgent: () => true },
      },
      fast ? it : wrapped,
      undefined,
      Number.POSITIVE_INFINITY,
    );
    assertEquals(r.files.length, 1);
    return { meta: r.files[0], bytes: await fs.readFile("/t/000001.sst"), fs };
  };
  const fast = await build(true);
  const slow = await build(false);
  assertTrue(fast.meta.entryCount > 3_000, `only ${fast.meta.entryCount} entries`);
  assertTrue(fast.bytes.length > 300 * 1024, `a table of only ${fast.bytes.length} bytes`);
  assertEquals(fast.meta, slow.meta);
  assertEquals(fast.bytes, slow.bytes);
  // And the table reads back as the memtable's walk: every entry, and each key through its bloom.
  const want: Entry[] = [];
  const it = memtable.iterator(horizon);
  for (it.seek(undefined); it.valid(); it.next()) {
    const x = it.entry();
    want.push(plain(x));
  }
  const tables = new TableCache(fast.fs, "/t", 4, new BlockCache(1 << 20));
  const table = await tables.acquire(1);
  const got: Entry[] = [];
  const ti = table.iterator();
  await ti.seek(undefined);
  while (ti.valid()) {
    const x = ti.entry();
    got.push(plain(x));
    const p = ti.next();
    if (p) await p;
  }
  ti.close();
  assertEquals(got, want);
  for (const x of want) {
    const e = await table.get(x.key, encodeInternalKey(x.key, x.version), bloomHash(x.key));
    assertEquals(e?.version, x.version);
  }
  table.unref();
  tables.close();
});
