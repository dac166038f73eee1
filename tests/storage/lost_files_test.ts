/**
 * Damage that a reader cannot see inside one file: a manifest whose last
 * edit was lost in a way that looks like a torn tail, a lost CURRENT, a lost
 * WAL segment, a missing or shortened table. Opening must refuse with a
 * CorruptionError naming the file, before it rewrites or deletes anything,
 * never come up without acknowledged data.
 */

import { CorruptionError } from "../../lib/common/errors.ts";
import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import { Engine } from "../../lib/storage/engine.ts";
import { MemFileSystem } from "../../lib/storage/mem_fs.ts";
import { readRecords } from "../../lib/storage/record_log.ts";
import { b, filesEndingWith, filesStartingWith, putBatch, s } from "./helpers.ts";

/** k0..k2, each flushed to its own table, then k3 in the WAL only. */
async function flushedThrice(): Promise<MemFileSystem> {
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs });
  for (let i = 0; i < 3; i++) {
    await e.write(putBatch(`k${i}`, `v${i}`));
    await e.flush();
  }
  await e.write(putBatch("k3", "v3"));
  await e.close();
  return fs;
}

/** Opens /db and returns the CorruptionError it fails with (or fails the test). */
async function refusal(fs: MemFileSystem): Promise<CorruptionError> {
  const before = fs.paths();
  let error: unknown;
  try {
    const e = await Engine.open("/db", { fs });
    const seen = [];
    for (const k of ["k0", "k1", "k2", "k3"]) seen.push(`${k}=${s((await e.get(b(k)))?.value)}`);
    await e.close();
    error = new Error(`opened; read ${seen.join(" ")}`);
  } catch (e) {
    error = e;
  }
  assertTrue(error instanceof CorruptionError, String(error));
  assertEquals(fs.paths(), before, "nothing created or deleted by the refused open");
  return error;
}

async function manifestPath(fs: MemFileSystem): Promise<string> {
  const current = s(await fs.readFile("/db/CURRENT"))!.trim();
  return `/db/${current}`;
}

Deno.test("lost files: a manifest whose last edit reads as torn (a length bit, a cut, zeros) is refused", async () => {
  for (const damage of ["length bit", "cut", "zeros"] as const) {
    const fs = await flushedThrice();
    const live = await manifestPath(fs);
    const scan = await readRecords(fs, live, true);
    const last = scan.records[scan.records.length - 1];
    const bytes = fs.fileBytes(live);
    if (damage === "length bit") bytes[last.offset + 4] ^= 0x01; // claims 16 MiB more
    if (damage === "zeros") bytes.fill(0, last.offset);
    fs.setFileBytes(live, damage === "cut" ? bytes.subarray(0, last.offset + 5) : bytes);
    const err = await refusal(fs);
    assertEquals(err.file, live, damage);
    assertTrue(err.message.includes("WAL segment"), err.message);
  }
});

Deno.test("lost files: a directory with tables or WAL data but no CURRENT is not opened as a new engine", async () => {
  const fs = await flushedThrice();
  await fs.remove("/db/CURRENT");
  const err = await refusal(fs);
  assertEquals(err.file, "/db/CURRENT");
  assertTrue(err.message.includes("CURRENT is missing"), err.message);
});

Deno.test("lost files: a first open that stopped before writing CURRENT still opens as new", async () => {
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs });
  await e.close();
  await fs.remove("/db/CURRENT"); // an empty WAL and a manifest describing nothing
  const again = await Engine.open("/db", { fs });
  assertEquals(again.appliedIndex, -1);
  await again.write(putBatch("a", "1"));
  await again.close();
});

Deno.test("lost files: a missing WAL segment, or a missing or shortened table, is refused", async () => {
  let fs = await flushedThrice();
  for (const wal of filesEndingWith(fs, ".log")) await fs.remove(wal);
  let err = await refusal(fs);
  assertTrue(err.message.includes("WAL segment"), err.message);

  fs = await flushedThrice();
  const tables = filesEndingWith(fs, ".sst");
  await fs.remove(tables[0]);
  err = await refusal(fs);
  assertTrue(err.message.includes(`names table ${tables[0]}, which is missing`), err.message);

  fs = await flushedThrice();
  const table = filesEndingWith(fs, ".sst")[1];
  const bytes = fs.fileBytes(table);
  fs.setFileBytes(table, bytes.subarray(0, bytes.length - 10));
  err = await refusal(fs);
  assertEquals([err.file, err.offset], [table, bytes.length - 10]);
  assertTrue(filesStartingWith(fs, "/db", "MANIFEST-").length > 0);
});
