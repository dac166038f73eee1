import { utf8 } from "../common/bytes.ts";
import { ClosedError } from "../common/errors.ts";
import { assertEquals, assertRejects, assertTrue } from "../common/test_helpers.ts";
import { BlockCache } from "./block_cache.ts";
import { bloomHash } from "./bloom.ts";
import { encodeInternalKey, EntryKind } from "./internal_key.ts";
import { MemFileSystem } from "./mem_fs.ts";
import { TableCache, tableFileName } from "./table_cache.ts";
import { TableWriter } from "./table_writer.ts";

Deno.test("sstable: write, get every version, iterate, seek; cache budget holds", async () => {
  const fs = new MemFileSystem();
  await fs.mkdir("/t");
  const w = new TableWriter(await fs.create(`/t/${tableFileName(1)}`), 256);
  const keys: string[] = [];
  for (let i = 0; i < 500; i++) keys.push(`key${String(i).padStart(4, "0")}`);
  for (const k of keys) {
    for (const v of [30, 20, 10]) {
      const kind = v === 20 && k.endsWith("7") ? EntryKind.delete : EntryKind.put;
      await w.add({
        key: utf8(k),
        version: v,
        kind,
        value: kind === EntryKind.delete ? new Uint8Array(0) : utf8(`${k}@${v}`),
        expiresAtMs: 0,
      });
    }
  }
  const props = await w.finish();
  assertEquals(props.entryCount, 1500);
  assertEquals(props.maxVersion, 30);
  const blockCache = new BlockCache(8 * 1024);
  const tc = new TableCache(fs, "/t", 4, blockCache);
  const r = await tc.acquire(1);
  for (const k of keys) {
    const h = bloomHash(utf8(k));
    for (const [at, want] of [[35, 30], [25, 20], [15, 10], [5, undefined]] as const) {
      const e = await r.get(utf8(k), encodeInternalKey(utf8(k), at), h);
      assertEquals(e?.version, want, `${k} at ${at}`);
      if (e && want === 20 && k.endsWith("7")) assertEquals(e.kind, EntryKind.delete);
    }
  }
  assertEquals(
    await r.get(utf8("nope"), encodeInternalKey(utf8("nope"), 99), bloomHash(utf8("nope"))),
    undefined,
  );
  assertTrue(blockCache.bytes <= 8 * 1024, "the block cache stays within its budget");
  const it = r.iterator();
  await it.seek(utf8("key0100"), 25);
  assertEquals([new TextDecoder().decode(it.entry().key), it.entry().version], ["key0100", 20]);
  let n = 0;
  while (it.valid()) {
    n++;
    const p = it.next();
    if (p) await p;
  }
  assertEquals(n, 1500 - 300 - 1);
  it.close();
  r.unref();
  // A closed cache opens nothing more, also when the open was already under way.
  const tc2 = new TableCache(fs, "/t", 4, blockCache);
  const opening = tc2.acquire(1);
  tc.close();
  tc2.close();
  await assertRejects(() => tc.acquire(1), ClosedError);
  await assertRejects(() => opening, ClosedError);
  assertEquals(tc2.size, 0);
});

Deno.test("sstable: a large table is synced as it is written, not only at the end", async () => {
  const fs = new MemFileSystem();
  await fs.mkdir("/t");
  const file = await fs.create(`/t/${tableFileName(1)}`);
  const syncedAt: number[] = [];
  let written = 0;
  const counted = {
    ...file,
    path: file.path,
    append: (b: Uint8Array) => (written += b.length, file.append(b)),
    syncData: () => (syncedAt.push(written), file.syncData()),
  };
  const w = new TableWriter(counted, 4096);
  const value = new Uint8Array(1000).fill(1);
  for (let i = 0; i < 4000; i++) { // about 4 MB
    await w.add({
      key: utf8(`key${String(i).padStart(5, "0")}`),
      version: 1,
      kind: EntryKind.put,
      value,
      expiresAtMs: 0,
    });
  }
  assertTrue(syncedAt.length >= 2, `fsyncs while writing: ${syncedAt.length}`);
  await w.finish();
  // Every stretch between fsyncs stays near 1 MiB (one 256 KiB write past it at most).
  for (let i = 1; i < syncedAt.length; i++) {
    assertTrue(syncedAt[i] - syncedAt[i - 1] <= 1.5 * 1024 * 1024, `gap ${i}: ${syncedAt}`);
  }
});

Deno.test("sstable: the writer refuses entries out of internal-key order", async () => {
  const fs = new MemFileSystem();
  await fs.mkdir("/t");
  const entry = (key: string, version: number) => ({
    key: utf8(key),
    version,
    kind: EntryKind.put,
    value: utf8("v"),
    expiresAtMs: 0,
  });
  for (
    const [first, second] of [
      [entry("b", 1), entry("a", 1)], // key going down
      [entry("a", 1), entry("a", 2)], // same key, version going up
      [entry("a", 3), entry("a", 3)], // the same internal key twice
    ]
  ) {
    const w = new TableWriter(await fs.create(`/t/${tableFileName(9)}`), 4096);
    await w.add(first);
    let refused = false;
    try {
      await w.add(second);
    } catch {
      refused = true;
    }
    assertTrue(refused, `${first.version}/${second.version} accepted`);
    await w.abandon();
  }
  // Newest version first, then the next key (also one that extends the previous key with 0x00).
  const w = new TableWriter(await fs.create(`/t/${tableFileName(10)}`), 4096);
  for (const e of [entry("a", 3), entry("a", 1), entry("a\u0000", 9), entry("b", 1)]) {
    await w.add(e);
  }
  assertEquals((await w.finish()).entryCount, 4);
});
