import { utf8 } from "../common/bytes.ts";
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
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
  tc.close();
});
