/**
 * Bit flips in every kind of stored structure: the engine must report a
 * CorruptionError naming the file and byte offset, and never return a wrong
 * value.
 */

import { CorruptionError } from "../../lib/common/errors.ts";
import { assertEquals, assertRejects, assertTrue } from "../../lib/common/test_helpers.ts";
import { Engine } from "../../lib/storage/engine.ts";
import { readU32, readU64 } from "../../lib/storage/internal_key.ts";
import { MemFileSystem } from "../../lib/storage/mem_fs.ts";
import { scanRecords } from "../../lib/storage/record_log.ts";
import { footerBytes } from "../../lib/storage/table_writer.ts";
import { WriteBatch } from "../../lib/storage/write_batch.ts";
import { b, filesEndingWith, filesStartingWith, flipBit, keyOf, putBatch, s } from "./helpers.ts";

const keyCount = 300;
const valueOf = (i: number) => `value-${i}-${"v".repeat(20)}`;

/** An engine directory holding one SSTable with `keyCount` keys (and an empty WAL). */
async function oneTable(): Promise<{ fs: MemFileSystem; table: string }> {
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs });
  const batch = new WriteBatch();
  for (let i = 0; i < keyCount; i++) batch.put(b(keyOf(i)), b(valueOf(i)));
  await e.write(batch);
  await e.flush();
  await e.close();
  const tables = filesEndingWith(fs, ".sst");
  assertEquals(tables.length, 1);
  return { fs, table: tables[0] };
}

/** Reads every key: each read returns the right value or throws CorruptionError. */
async function readAllExpectCorruption(
  fs: MemFileSystem,
  file: string,
  offset: number,
): Promise<void> {
  let errors = 0;
  let e: Engine;
  try {
    e = await Engine.open("/db", { fs });
  } catch (err) {
    assertTrue(err instanceof CorruptionError, `open failed with ${err}`);
    assertEquals([err.file, err.offset], [file, offset]);
    return;
  }
  for (let i = 0; i < keyCount; i++) {
    try {
      const got = await e.get(b(keyOf(i)));
      assertEquals(s(got?.value), valueOf(i), `never a wrong value (${keyOf(i)})`);
    } catch (err) {
      if (!(err instanceof CorruptionError)) throw err;
      assertEquals([err.file, err.offset], [file, offset]);
      errors++;
    }
  }
  try {
    for await (const kv of e.scan({})) {
      assertEquals(s(kv.value), valueOf(Number(s(kv.key)!.slice(3))));
    }
  } catch (err) {
    if (!(err instanceof CorruptionError)) throw err;
    errors++;
  }
  await e.close();
  assertTrue(errors > 0, "the damage was detected");
}

function tableLayout(bytes: Uint8Array) {
  const footerAt = bytes.length - footerBytes;
  return {
    footerAt,
    bloomOffset: readU64(bytes, footerAt),
    bloomSize: readU32(bytes, footerAt + 8),
    indexOffset: readU64(bytes, footerAt + 12),
    indexSize: readU32(bytes, footerAt + 20),
  };
}

Deno.test("corruption: a flipped bit in a data block", async () => {
  const { fs, table } = await oneTable();
  const bytes = fs.fileBytes(table);
  for (const at of [10, 100, 2000]) {
    const fs2 = fs.crashClone();
    fs2.setFileBytes(table, flipBit(bytes, at, 3));
    await readAllExpectCorruption(fs2, table, 0); // All three sit in the first block.
  }
});

Deno.test("corruption: a flipped bit in the index block", async () => {
  const { fs, table } = await oneTable();
  const bytes = fs.fileBytes(table);
  const l = tableLayout(bytes);
  const fs2 = fs.crashClone();
  fs2.setFileBytes(table, flipBit(bytes, l.indexOffset + Math.floor(l.indexSize / 2), 1));
  await readAllExpectCorruption(fs2, table, l.indexOffset);
});

Deno.test("corruption: a flipped bit in the bloom block", async () => {
  const { fs, table } = await oneTable();
  const bytes = fs.fileBytes(table);
  const l = tableLayout(bytes);
  const fs2 = fs.crashClone();
  fs2.setFileBytes(table, flipBit(bytes, l.bloomOffset + 5, 6));
  await readAllExpectCorruption(fs2, table, l.bloomOffset);
});

Deno.test("corruption: a flipped bit in the footer (handles, checksum, magic)", async () => {
  const { fs, table } = await oneTable();
  const bytes = fs.fileBytes(table);
  const l = tableLayout(bytes);
  for (
    const [at, reported] of [[2, l.footerAt], [30, l.footerAt], [37, l.footerAt], [
      44,
      l.footerAt + 40,
    ]]
  ) {
    const fs2 = fs.crashClone();
    fs2.setFileBytes(table, flipBit(bytes, l.footerAt + at, 2));
    await readAllExpectCorruption(fs2, table, reported);
  }
});

Deno.test("corruption: a flipped bit in a WAL record with valid records after it", async () => {
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs });
  for (let i = 0; i < 10; i++) await e.write(putBatch(`k${i}`, `v${i}`));
  const base = fs.crashClone();
  await e.close();
  const [wal] = filesEndingWith(base, ".log");
  const bytes = base.fileBytes(wal);
  const records = scanRecords(bytes, wal).records;
  const victim = records[4];
  // Payload, length field and CRC field of the 5th record.
  for (const at of [victim.offset + 10, victim.offset + 5, victim.offset + 1]) {
    const fs2 = base.crashClone();
    fs2.setFileBytes(wal, flipBit(bytes, at, 4));
    const err = await assertRejects(() => Engine.open("/db", { fs: fs2 }), CorruptionError);
    assertEquals([err.file, err.offset], [wal, victim.offset]);
    assertTrue(err.message.includes(wal) && err.message.includes(String(victim.offset)));
  }
});

Deno.test("corruption: a flipped bit in the manifest", async () => {
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs });
  for (let round = 0; round < 3; round++) {
    await e.write(putBatch(`k${round}`, `v${round}`));
    await e.flush();
  }
  await e.close();
  const [manifest] = filesStartingWith(fs, "/db", "MANIFEST-");
  const bytes = fs.fileBytes(manifest);
  const records = scanRecords(bytes, manifest, true).records;
  assertTrue(records.length >= 4, "snapshot + 3 flush edits");
  for (const r of [records[0], records[1], records[records.length - 1]]) {
    for (const at of [r.offset + 2, r.offset + 9, r.offset + 8 + r.payload.length - 1]) {
      const fs2 = fs.crashClone();
      fs2.setFileBytes(manifest, flipBit(bytes, at, 5));
      const err = await assertRejects(() => Engine.open("/db", { fs: fs2 }), CorruptionError);
      assertEquals([err.file, err.offset], [manifest, r.offset]);
    }
  }
  // Untouched, it opens and has everything.
  const ok = await Engine.open("/db", { fs });
  assertEquals(s((await ok.get(b("k2")))?.value), "v2");
  await ok.close();
});
