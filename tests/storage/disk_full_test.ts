/**
 * Injected ENOSPC and EIO: the failing write is rejected with a clear error,
 * the engine keeps serving reads, and reopening finds every acknowledged
 * write and no corruption.
 */

import { DiskFullError, isKVError } from "../../lib/common/errors.ts";
import { assertEquals, assertRejects, assertTrue } from "../../lib/common/test_helpers.ts";
import { Engine } from "../../lib/storage/engine.ts";
import { MemFileSystem } from "../../lib/storage/mem_fs.ts";
import { b, keyOf, putBatch, s, scanAll } from "./helpers.ts";

async function fill(e: Engine, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++) await e.write(putBatch(keyOf(i), `v${i}`));
}

async function checkAll(e: Engine, to: number): Promise<void> {
  for (let i = 0; i < to; i++) assertEquals(s((await e.get(b(keyOf(i))))?.value), `v${i}`);
}

Deno.test("disk full: a WAL append fails with DiskFullError, reads continue, writes resume", async () => {
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs });
  await fill(e, 0, 50);
  fs.injectError({ path: ".log", op: "append", code: "ENOSPC", times: 3, partialBytes: 7 });
  for (let i = 0; i < 3; i++) {
    const err = await assertRejects(() => e.write(putBatch("nope", "x")), DiskFullError);
    assertTrue(isKVError(err, "DiskFull") && err.message.includes("no space left"), err.message);
  }
  await checkAll(e, 50);
  assertEquals(await e.get(b("nope")), undefined);
  assertEquals((await scanAll(e)).length, 50);
  // Space came back: the partial records were cut, so new writes land cleanly.
  await fill(e, 50, 60);
  const crashed = fs.crashClone();
  await e.close();
  for (const f of [fs, crashed]) {
    const e2 = await Engine.open("/db", { fs: f });
    await checkAll(e2, 60);
    assertEquals(await e2.get(b("nope")), undefined);
    await e2.close();
  }
});

Deno.test("disk full: a flush that cannot write its table fails, data stays readable and durable", async () => {
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs });
  await fill(e, 0, 100);
  fs.injectError({ path: ".sst", op: "append", code: "ENOSPC", times: Infinity });
  await assertRejects(() => e.flush(), DiskFullError);
  await checkAll(e, 100);
  // Background failures stop writes (read-only) until reopen, with the cause.
  await assertRejects(() => e.write(putBatch("late", "x")), DiskFullError);
  assertTrue(e.stats().backgroundError !== undefined);
  const crashed = fs.crashClone();
  await e.close();
  fs.clearErrors();
  for (const f of [fs, crashed]) {
    const e2 = await Engine.open("/db", { fs: f });
    await checkAll(e2, 100);
    await e2.flush();
    await checkAll(e2, 100);
    await e2.close();
  }
});

Deno.test("disk full: EIO on fsync makes the WAL read-only for good, reopen is clean", async () => {
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs });
  await fill(e, 0, 20);
  fs.injectError({ path: ".log", op: "sync", code: "EIO" });
  await assertRejects(() => e.write(putBatch("x", "1")), Error, "injected EIO");
  // The failed group went into the memtable while its fsync ran; it never becomes visible.
  assertEquals(await e.get(b("x")), undefined);
  // After a failed fsync the WAL cannot be trusted: later writes fail too, reads work.
  await assertRejects(() => e.write(putBatch("y", "1")), Error, "EIO");
  await checkAll(e, 20);
  const crashed = fs.crashClone();
  await e.close();
  const e2 = await Engine.open("/db", { fs: crashed });
  await checkAll(e2, 20);
  await e2.write(putBatch("z", "1"));
  await e2.close();
});
