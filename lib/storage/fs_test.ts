import { utf8 } from "../common/bytes.ts";
import { DiskFullError, IoError } from "../common/errors.ts";
import { SeededRandom } from "../common/random.ts";
import { assertEquals, assertRejects, assertTrue } from "../common/test_helpers.ts";
import { DenoFileSystem } from "./deno_fs.ts";
import type { FileSystem } from "./fs.ts";
import { MemFileSystem } from "./mem_fs.ts";
import { SyncWriteThread } from "./sync_write_thread.ts";

async function roundTrip(fs: FileSystem, dir: string): Promise<void> {
  await fs.mkdir(dir);
  const f = await fs.create(`${dir}/a`);
  await f.append(utf8("hello "));
  await f.append(utf8("world"));
  await f.syncData();
  assertEquals(new TextDecoder().decode(await f.read(6, 100)), "world");
  assertEquals(await f.size(), 11);
  await f.truncate(5);
  assertEquals(new TextDecoder().decode(await f.read(0, 100)), "hello");
  await f.close();
  await fs.syncDir(dir);
  await fs.rename(`${dir}/a`, `${dir}/b`);
  assertEquals(await fs.list(dir), ["b"]);
  assertEquals((await fs.stat(`${dir}/b`))?.sizeBytes, 5);
  await fs.remove(`${dir}/b`);
  await fs.remove(`${dir}/b`); // Missing is fine.
  assertEquals(await fs.stat(`${dir}/b`), undefined);
}

/** Preallocated space: zeros on disk past the appends, overwritten by later appends. */
async function preallocation(fs: FileSystem, dir: string): Promise<void> {
  await fs.mkdir(dir);
  const f = await fs.create(`${dir}/p`);
  await f.append(utf8("abc"));
  await f.syncData();
  await f.preallocate(4096);
  assertEquals(await f.size(), 3, "preallocation does not move the end of the appends");
  assertEquals((await fs.stat(`${dir}/p`))?.sizeBytes, 4096);
  await f.append(utf8("def"));
  await f.append(utf8("g"));
  assertEquals(await f.size(), 7);
  assertEquals(new TextDecoder().decode(await f.read(0, 100)), "abcdefg");
  const disk = await fs.readFile(`${dir}/p`);
  assertEquals(disk.length, 4096);
  assertEquals(new TextDecoder().decode(disk.subarray(0, 7)), "abcdefg");
  assertTrue(disk.subarray(7).every((x) => x === 0), "the rest is zero");
  // Appends past the preallocated end grow the file; truncate cuts preallocated space too.
  await f.append(new Uint8Array(5000).fill(1));
  assertEquals((await fs.stat(`${dir}/p`))?.sizeBytes, 5007);
  await f.truncate(7);
  await f.syncData();
  assertEquals((await fs.stat(`${dir}/p`))?.sizeBytes, 7);
  await f.close();
  // Opened anew, the preallocated zeros are part of the file.
  const g = await fs.create(`${dir}/q`);
  await g.append(utf8("x"));
  await g.syncData();
  await g.preallocate(100);
  await g.close();
  assertEquals(await (await fs.open(`${dir}/q`)).size(), 100);
}

Deno.test("fs: preallocation behaves alike on both file systems", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rustkvd-fs-test-" });
  try {
    await preallocation(new DenoFileSystem(), `${dir}/x`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  await preallocation(new MemFileSystem(), "/x");
});

Deno.test("fs: DenoFileSystem and MemFileSystem behave alike", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rustkvd-fs-test-" });
  try {
    await roundTrip(new DenoFileSystem(), `${dir}/x`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  await roundTrip(new MemFileSystem(), "/x");
});

Deno.test("mem fs: crash keeps synced bytes and synced directory entries only", async () => {
  const fs = new MemFileSystem();
  await fs.mkdir("/d");
  const a = await fs.create("/d/a");
  await a.append(utf8("durable"));
  await a.syncData();
  await fs.syncDir("/d");
  await a.append(utf8("-lost"));
  const b = await fs.create("/d/b"); // Never dir-synced: forgotten by a crash.
  await b.append(utf8("x"));
  await b.syncData();
  const c = fs.crashClone();
  assertEquals(c.paths(), ["/d/a"]);
  assertEquals(new TextDecoder().decode(c.fileBytes("/d/a")), "durable");
  // A rename that was not dir-synced is undone.
  await fs.rename("/d/a", "/d/renamed");
  assertEquals(fs.crashClone().paths(), ["/d/a"]);
  // A torn crash keeps a prefix of the unsynced bytes.
  const f = await fs.create("/d/t");
  await fs.syncDir("/d");
  await f.append(utf8("0123456789"));
  const lens = new Set<number>();
  const r = new SeededRandom(1);
  for (let i = 0; i < 50; i++) lens.add(fs.crashClone({ tearRandom: r }).fileBytes("/d/t").length);
  assertTrue(lens.size > 3, "various torn lengths");
  // In-place crash invalidates old handles.
  fs.crash();
  await assertRejects(() => f.append(utf8("x")), IoError, "after a simulated crash");
});

Deno.test("mem fs: injected errors fire once or always", async () => {
  const fs = new MemFileSystem();
  await fs.mkdir("/d");
  fs.injectError({ path: "/d/a", op: "append", code: "ENOSPC" });
  const a = await fs.create("/d/a");
  await assertRejects(() => a.append(utf8("x")), DiskFullError);
  await a.append(utf8("y"));
  fs.injectError({ op: "syncDir", code: "EIO", times: Infinity });
  await assertRejects(() => fs.syncDir("/d"), IoError);
  await assertRejects(() => fs.syncDir("/d"), IoError);
  fs.clearErrors();
  await fs.syncDir("/d");
});

Deno.test("fs: a preallocation running beside appends never overwrites them (real disk)", async () => {
  // Appends issued while zeros are being written past the end: those that reach
  // into the zero-fill range must wait for it, or its zeros would land on them.
  const dir = await Deno.makeTempDir({ prefix: "rustkvd-fs-test-" });
  try {
    const fs = new DenoFileSystem();
    const f = await fs.create(`${dir}/race`);
    const chunk = (i: number) => new Uint8Array(10_000).fill(1 + (i % 250));
    const pending: Promise<void>[] = [];
    let expected = 0;
    for (let round = 0; round < 4; round++) {
      // Appends, some of them already writing when a fill starts, then more racing it.
      for (let i = 0; i < 40; i++) {
        if (i === 20 || i === 30) {
          await new Promise((resolve) => setTimeout(resolve, 0));
          pending.push(f.preallocate(expected + 300_000));
        }
        pending.push(f.append(chunk(round * 40 + i)));
        expected += 10_000;
      }
    }
    await Promise.all(pending);
    await f.syncData();
    assertEquals(await f.size(), expected);
    const disk = await fs.readFile(`${dir}/race`);
    for (let i = 0; i < 160; i++) {
      const part = disk.subarray(i * 10_000, (i + 1) * 10_000);
      assertTrue(part.every((x) => x === 1 + (i % 250)), `append ${i} intact`);
    }
    assertTrue(disk.subarray(expected).every((x) => x === 0), "only zeros after the appends");
    await f.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fs: durable appends (write thread) mix with appends, zero-fills, truncates and renames", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rustkvd-fs-test-" });
  try {
    const fs = new DenoFileSystem();
    const thread = SyncWriteThread.shared()!;
    const before = thread.writeCount;
    const f = await fs.create(`${dir}/a.tmp`);
    await f.append(utf8("abc"));
    await f.syncData();
    await f.appendDurable!(utf8("def")); // through the thread, at offset 3
    await f.append(utf8("g")); // through the handle again: it must continue at 6, not 0
    await f.syncData();
    await f.preallocate(1 << 16);
    await f.appendDurable!(utf8("hij")); // over preallocated zeros
    assertEquals(await f.size(), 10);
    assertEquals(new TextDecoder().decode(await f.read(0, 100)), "abcdefghij");
    // Renamed through the file system: later durable appends and fills follow the file.
    await fs.rename(`${dir}/a.tmp`, `${dir}/a`);
    await f.appendDurable!(utf8("klm"));
    await f.preallocate(1 << 18);
    await f.truncate(12);
    await f.appendDurable!(utf8("LM"));
    const disk = await fs.readFile(`${dir}/a`);
    assertEquals(new TextDecoder().decode(disk.subarray(0, 14)), "abcdefghijklLM");
    assertTrue(disk.subarray(14).every((b) => b === 0), "zeros after the appends");
    await f.close();
    assertEquals(thread.writeCount - before, 4, "all four durable appends went through the thread");

    // A file renamed behind the file system's back, with a new file at its old path: the
    // handle must not write into the newcomer (its second handles are checked by inode).
    const g = await fs.create(`${dir}/b`);
    await Deno.rename(`${dir}/b`, `${dir}/b-moved`);
    await Deno.writeFile(`${dir}/b`, utf8("newcomer"));
    await g.appendDurable!(utf8("mine"));
    await assertRejects(() => g.preallocate(4096), IoError, "no longer the file");
    await g.close();
    assertEquals(thread.writeCount - before, 4, "the newcomer was never written");
    assertEquals(new TextDecoder().decode(await Deno.readFile(`${dir}/b`)), "newcomer");
    assertEquals(new TextDecoder().decode(await Deno.readFile(`${dir}/b-moved`)), "mine");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
