/**
 * Exhaustive torn-tail recovery: the WAL is cut at every byte offset within
 * its last three records, both as a shorter file and with the rest of its
 * preallocated space still zero. Open must succeed, keep every record that
 * ends before the cut (all were acknowledged as synced), and drop the torn one.
 */

import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import { Engine } from "../../lib/storage/engine.ts";
import { SeededRandom, testSeed } from "../../lib/common/random.ts";
import { MemFileSystem } from "../../lib/storage/mem_fs.ts";
import { scanRecords } from "../../lib/storage/record_log.ts";
import { b, filesEndingWith, putBatch, s } from "./helpers.ts";

Deno.test("torn tail: every cut within the last 3 WAL records recovers the synced prefix", async () => {
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs });
  const n = 8;
  for (let i = 0; i < n; i++) await e.write(putBatch(`k${i}`, `value-${i}-${"x".repeat(i * 3)}`));
  const base = fs.crashClone();
  await e.close();
  const [walPath] = filesEndingWith(base, ".log");
  const wal = base.fileBytes(walPath);
  const records = scanRecords(wal, walPath).records;
  assertEquals(records.length, n);
  const firstCut = records[n - 3].offset;
  const lastEnd = records[n - 1].offset + 8 + records[n - 1].payload.length;
  assertTrue(wal.length > lastEnd, "the WAL has preallocated space after its records");
  let cases = 0;
  for (let i = 0; i <= 2 * (lastEnd - firstCut) + 1; i++) {
    const cut = firstCut + (i >> 1);
    const fs2 = base.crashClone();
    const bytes = new Uint8Array(i % 2 === 0 ? cut : wal.length);
    bytes.set(wal.subarray(0, cut));
    fs2.setFileBytes(walPath, bytes);
    // Records wholly before the cut survive; the one the cut falls in is lost.
    let whole = 0;
    for (const r of records) {
      const end = r.offset + 8 + r.payload.length;
      if (end <= cut) whole++;
    }
    const e2 = await Engine.open("/db", { fs: fs2 });
    for (let i = 0; i < n; i++) {
      const got = s((await e2.get(b(`k${i}`)))?.value);
      assertEquals(
        got,
        i < whole ? `value-${i}-${"x".repeat(i * 3)}` : undefined,
        `cut at ${cut}: key k${i}`,
      );
    }
    assertEquals(e2.currentVersion, whole, `cut at ${cut}: version`);
    // The engine keeps working after a torn tail, and a second reopen agrees.
    await e2.write(putBatch("after", "ok"));
    await e2.close();
    const e3 = await Engine.open("/db", { fs: fs2 });
    assertEquals(s((await e3.get(b("after")))?.value), "ok");
    assertEquals(e3.currentVersion, whole + 1);
    await e3.close();
    cases++;
  }
  assertEquals(cases, 2 * (lastEnd - firstCut + 1));
});

Deno.test("torn in-place writes: any subset of the unsynced sectors recovers a prefix, never corruption", async () => {
  // Unsynced writes land over preallocated zeros, and a crash may keep any
  // subset of their 512-byte sectors: a later record on disk, an earlier one
  // not. Recovery must see a torn tail (the sync markers say none of it was
  // durable), keep every synced write, and a prefix of the unsynced ones.
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs, walBytesPerSync: 0 });
  const synced = 6;
  const unsynced = 24;
  const value = (i: number) => `v${i}-${"x".repeat(150 + 37 * (i % 5))}`;
  for (let i = 0; i < synced; i++) await e.write(putBatch(`s${i}`, value(i)));
  for (let i = 0; i < unsynced; i++) {
    await e.write(putBatch(`u${String(i).padStart(2, "0")}`, value(i)), { sync: false });
  }
  const first = testSeed();
  const seeds = Deno.env.get("SEED") ? [first] : Array.from({ length: 150 }, (_, i) => first + i);
  let sawHole = 0;
  for (const seed of seeds) {
    try {
      const crashed = fs.crashClone({ tearRandom: new SeededRandom(seed) });
      const [wal] = filesEndingWith(crashed, ".log");
      const scan = scanRecords(crashed.fileBytes(wal), wal);
      // Part of the unsynced writes lost (with the old rule, holes here read as corruption).
      if (scan.tornTail && scan.records.length < synced + unsynced) sawHole++;
      const r = await Engine.open("/db", { fs: crashed });
      for (let i = 0; i < synced; i++) assertEquals(s((await r.get(b(`s${i}`)))?.value), value(i));
      let kept = 0;
      while (
        kept < unsynced && (await r.get(b(`u${String(kept).padStart(2, "0")}`))) !== undefined
      ) {
        kept++;
      }
      for (let i = kept; i < unsynced; i++) {
        assertEquals(
          await r.get(b(`u${String(i).padStart(2, "0")}`)),
          undefined,
          `u${i} after a gap`,
        );
      }
      assertEquals(r.currentVersion, synced + kept);
      await r.close();
    } catch (err) {
      console.error(
        `torn in-place test failed with SEED=${seed} (replay: SEED=${seed} deno test -A tests/storage/torn_tail_test.ts)`,
      );
      throw err;
    }
  }
  await e.close();
  assertTrue(sawHole > 0, "some crash tore the unsynced writes");
});

Deno.test("torn tail: opening reports a torn tail it cut off, with file and offset, and nothing else", async () => {
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs, walPreallocateBytes: 0 });
  for (let i = 0; i < 3; i++) await e.write(putBatch(`k${i}`, `v${i}`));
  await e.close();
  const clean = await Engine.open("/db", { fs, walPreallocateBytes: 0 });
  assertEquals(clean.repairs, [], "a clean stop leaves nothing to repair");
  for (let i = 3; i < 6; i++) await clean.write(putBatch(`k${i}`, `v${i}`));
  const crashed = fs.crashClone();
  await clean.close();
  const [walPath] = filesEndingWith(crashed, ".log");
  const wal = crashed.fileBytes(walPath);
  const records = scanRecords(wal, walPath).records;
  const last = records[records.length - 1];
  crashed.setFileBytes(walPath, wal.subarray(0, last.offset + 5)); // the last write half done
  const reopened = await Engine.open("/db", { fs: crashed, walPreallocateBytes: 0 });
  assertEquals(reopened.repairs, [
    `cut a torn tail off ${walPath} at byte offset ${last.offset} (5 bytes of an unfinished write)`,
  ]);
  assertEquals(s((await reopened.get(b("k4")))?.value), "v4");
  assertEquals(await reopened.get(b("k5")), undefined);
  await reopened.close();
});
