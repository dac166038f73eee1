/**
 * Exhaustive torn-tail recovery: the WAL is cut at every byte offset within
 * its last three records. Open must succeed, keep every record that ends
 * before the cut (all were acknowledged as synced), and drop the torn one.
 */

import { assertEquals } from "../../lib/common/test_helpers.ts";
import { Engine } from "../../lib/storage/engine.ts";
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
  let cases = 0;
  for (let cut = firstCut; cut <= wal.length; cut++) {
    const fs2 = base.crashClone();
    fs2.setFileBytes(walPath, wal.subarray(0, cut));
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
  assertEquals(cases, wal.length - firstCut + 1);
});
