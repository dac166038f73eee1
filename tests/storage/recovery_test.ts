/**
 * The seed's recovery and compaction scenarios, plus a real-disk round trip.
 */

import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import { Engine } from "../../lib/storage/engine.ts";
import { MemFileSystem } from "../../lib/storage/mem_fs.ts";
import { WriteBatch } from "../../lib/storage/write_batch.ts";
import { b, keyOf, putBatch, s, scanAll } from "./helpers.ts";

Deno.test("seed: write 10,000 keys, crash without flush or close, reopen: all recovered", async () => {
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs, memtableBytes: 256 * 1024 });
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < 10_000; i++) {
    pending.push(e.write(putBatch(keyOf(i), `value-${i}`)));
    if (pending.length === 64) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
  // Crash: the engine is dropped; only what was synced survives.
  const after = fs.crashClone();
  const e2 = await Engine.open("/db", { fs: after });
  for (let i = 0; i < 10_000; i++) {
    assertEquals(s((await e2.get(b(keyOf(i))))?.value), `value-${i}`, keyOf(i));
  }
  assertEquals(e2.currentVersion, 10_000);
  await e2.close();
  await e.close();
});

Deno.test("seed: 100,000 keys, forced compaction: all readable, no duplicates in a full scan", async () => {
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", {
    fs,
    memtableBytes: 512 * 1024,
    l1TargetBytes: 1024 * 1024,
    targetFileBytes: 256 * 1024,
    syncWrites: false,
  });
  const n = 100_000;
  // Write every key, then overwrite a tenth of them, so compaction must merge versions.
  for (let i = 0; i < n; i += 500) {
    const batch = new WriteBatch();
    for (let j = i; j < i + 500; j++) batch.put(b(keyOf(j)), b(`v1-${j}`));
    await e.write(batch);
  }
  for (let i = 0; i < n; i += 10) await e.write(putBatch(keyOf(i), `v2-${i}`));
  await e.compactAll();
  const st = e.stats();
  assertTrue(st.compactions > 0, "compaction ran");
  assertEquals(st.levels[0].files, 0, "L0 is empty after a forced compaction");
  let count = 0;
  let prev = "";
  for await (const kv of e.scan({})) {
    const k = s(kv.key)!;
    assertTrue(k > prev, `keys strictly increase: ${prev} then ${k}`);
    const i = Number(k.slice(3));
    assertEquals(s(kv.value), i % 10 === 0 ? `v2-${i}` : `v1-${i}`);
    prev = k;
    count++;
  }
  assertEquals(count, n);
  for (let i = 0; i < n; i += 997) {
    assertEquals(s((await e.get(b(keyOf(i))))?.value), i % 10 === 0 ? `v2-${i}` : `v1-${i}`);
  }
  await e.close();
  // And the compacted state survives a reopen.
  const e2 = await Engine.open("/db", { fs });
  assertEquals((await scanAll(e2, { prefix: b("key000000") })).length, 10);
  await e2.close();
});

Deno.test("real disk: write, flush, compact, reopen", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rustkvd-storage-test-" });
  try {
    const e = await Engine.open(dir, { memtableBytes: 64 * 1024, l0CompactionTrigger: 2 });
    for (let i = 0; i < 2000; i += 100) {
      const batch = new WriteBatch();
      for (let j = i; j < i + 100; j++) batch.put(b(keyOf(j)), b(`v${j}`));
      await e.write(batch, { appliedIndex: i });
    }
    await e.flush();
    await e.compactAll();
    await e.write(putBatch("tail", "t"));
    await e.close();
    const e2 = await Engine.open(dir);
    assertEquals(s((await e2.get(b(keyOf(1234))))?.value), "v1234");
    assertEquals(s((await e2.get(b("tail")))?.value), "t");
    assertEquals(e2.appliedIndex, 1900);
    assertEquals((await scanAll(e2)).length, 2001);
    await e2.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
