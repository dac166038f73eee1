import { utf8 } from "../common/bytes.ts";
import { ManualClock } from "../common/clock.ts";
import { CompactedError, InvalidArgumentError, IoError } from "../common/errors.ts";
import { assertEquals, assertRejects, assertTrue } from "../common/test_helpers.ts";
import { Engine, readNeedsIo } from "./engine.ts";
import type { FileHandle, FileSystem } from "./fs.ts";
import { MemFileSystem } from "./mem_fs.ts";
import { WriteBatch } from "./write_batch.ts";

const dec = new TextDecoder();
const str = (b: Uint8Array | undefined) => (b === undefined ? undefined : dec.decode(b));

async function put(e: Engine, k: string, v: string, version?: number) {
  return (await e.write(new WriteBatch().put(utf8(k), utf8(v), { version }))).version;
}

async function keys(e: Engine, opts: Parameters<Engine["scan"]>[0] = {}) {
  const out: string[] = [];
  for await (const kv of e.scan(opts)) out.push(`${dec.decode(kv.key)}=${dec.decode(kv.value)}`);
  return out;
}

Deno.test("engine: put, get, delete, versions assigned one per batch", async () => {
  const fs = new MemFileSystem();
  await using e = await Engine.open("/db", { fs });
  assertEquals(await put(e, "a", "1"), 1);
  const b = new WriteBatch().put(utf8("b"), utf8("2")).put(utf8("c"), utf8("3"));
  assertEquals((await e.write(b)).version, 2);
  assertEquals(str((await e.get(utf8("b")))?.value), "2");
  assertEquals((await e.get(utf8("c")))?.version, 2);
  await e.write(new WriteBatch().delete(utf8("a")));
  assertEquals(await e.get(utf8("a")), undefined);
  assertEquals(e.currentVersion, 3);
  assertEquals(await keys(e), ["b=2", "c=3"]);
});

Deno.test("engine: MVCC read at v1 after a write at v2 (seed)", async () => {
  const fs = new MemFileSystem();
  await using e = await Engine.open("/db", { fs });
  await put(e, "k", "one", 1);
  await put(e, "k", "two", 2);
  assertEquals(str((await e.get(utf8("k"), { atVersion: 1 }))?.value), "one");
  assertEquals(str((await e.get(utf8("k")))?.value), "two");
  await e.flush();
  assertEquals(str((await e.get(utf8("k"), { atVersion: 1 }))?.value), "one");
  assertEquals(str((await e.get(utf8("k"), { atVersion: 2 }))?.value), "two");
  assertEquals(await e.get(utf8("k"), { atVersion: 0 }), undefined);
});

Deno.test("engine: scan prefix, range, limit, reverse, keysOnly, atVersion", async () => {
  const fs = new MemFileSystem();
  await using e = await Engine.open("/db", { fs, memtableBytes: 4096 });
  for (let i = 0; i < 50; i++) await put(e, `p/${String(i).padStart(2, "0")}`, `v${i}`);
  await put(e, "q", "x");
  await put(e, "p/00", "new");
  assertEquals((await keys(e, { prefix: utf8("p/") })).length, 50);
  assertEquals(await keys(e, { prefix: utf8("p/"), limit: 2 }), ["p/00=new", "p/01=v1"]);
  assertEquals(await keys(e, { prefix: utf8("p/"), limit: 2, reverse: true }), [
    "p/49=v49",
    "p/48=v48",
  ]);
  assertEquals(await keys(e, { start: utf8("p/10"), end: utf8("p/12") }), ["p/10=v10", "p/11=v11"]);
  assertEquals(await keys(e, { prefix: utf8("p/0"), atVersion: 1 }), ["p/00=v0"]);
  assertEquals(await keys(e, { prefix: utf8("q"), keysOnly: true }), ["q="]);
});

Deno.test("engine: TTL is an absolute expiry", async () => {
  const fs = new MemFileSystem();
  await using e = await Engine.open("/db", { fs });
  await e.write(new WriteBatch().put(utf8("t"), utf8("v"), { expiresAtMs: 1000 }));
  assertEquals((await e.get(utf8("t"), { nowMs: 999 }))?.expiresAtMs, 1000);
  assertEquals(await e.get(utf8("t"), { nowMs: 1000 }), undefined);
  await e.flush();
  assertEquals(str((await e.get(utf8("t"), { nowMs: 10 }))?.value), "v");
  assertEquals(await e.get(utf8("t"), { nowMs: 5000 }), undefined);
});

Deno.test("engine: compactHistory, snapshots pin, CompactedError below", async () => {
  const fs = new MemFileSystem();
  await using e = await Engine.open("/db", { fs });
  for (let v = 1; v <= 5; v++) await put(e, "k", `v${v}`);
  const snap = e.snapshot();
  assertEquals(snap.version, 5);
  await put(e, "k", "v6");
  await e.compactHistory(6);
  assertEquals(e.compactedVersion, 6);
  // The snapshot at 5 still reads.
  assertEquals(str((await e.get(utf8("k"), { atVersion: 5 }))?.value), "v5");
  await assertRejects(() => e.get(utf8("k"), { atVersion: 4 }), CompactedError);
  snap.release();
  await assertRejects(() => e.get(utf8("k"), { atVersion: 5 }), CompactedError);
  await e.compactAll();
  assertEquals(str((await e.get(utf8("k"), { atVersion: 6 }))?.value), "v6");
  const h = [];
  for await (const x of e.history()) h.push(x.version);
  assertEquals(h, [6]);
  await assertRejects(() => e.compactHistory(100), InvalidArgumentError);
});

Deno.test("engine: a flush leaves out history below the horizon, keeps tombstones", async () => {
  const fs = new MemFileSystem();
  await using e = await Engine.open("/db", { fs });
  const l0Entries = () => e.stats().levels[0].entries;
  await put(e, "gone", "old");
  await e.flush(); // An older table holds gone@1.
  assertEquals(l0Entries(), 1);
  for (let v = 2; v <= 7; v++) await put(e, "k", `v${v}`);
  const snap = e.snapshot(); // Pins 7.
  for (let v = 8; v <= 10; v++) await put(e, "k", `v${v}`);
  await e.write(new WriteBatch().delete(utf8("gone"))); // 11
  await e.compactHistory(11);
  await e.flush(); // The horizon is 7, the pinned snapshot: k@2..6 are left out.
  assertEquals(l0Entries(), 1 + 4 + 1, e.describeLevels());
  assertEquals(str((await e.get(utf8("k"), { atVersion: 7 }))?.value), "v7");
  assertEquals(str((await e.get(utf8("k"), { atVersion: 9 }))?.value), "v9");
  // The tombstone, at the horizon once the snapshot goes, still hides gone@1 in the older table.
  snap.release();
  await put(e, "k", "v12");
  await e.compactHistory(12);
  await e.flush(); // The horizon is 12: only k@12 is needed of this memtable.
  assertEquals(l0Entries(), 1 + 5 + 1);
  assertEquals(await e.get(utf8("gone")), undefined);
  assertEquals(str((await e.get(utf8("k")))?.value), "v12");
  await e.compactAll();
  assertEquals(await e.get(utf8("gone")), undefined);
  assertEquals(e.stats().levels.reduce((n, l) => n + l.entries, 0), 1, "only k@12 at the bottom");
});

Deno.test("engine: appliedIndex is persisted with the batch", async () => {
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs });
  await e.write(new WriteBatch().put(utf8("a"), utf8("1")), { appliedIndex: 7 });
  assertEquals(e.appliedIndex, 7);
  const fs2 = fs.crashClone();
  const e2 = await Engine.open("/db", { fs: fs2 });
  assertEquals(e2.appliedIndex, 7);
  await e2.write(new WriteBatch().put(utf8("b"), utf8("1")), { appliedIndex: 9 });
  await e2.flush();
  await e2.close();
  await e.close();
  const e3 = await Engine.open("/db", { fs: fs2 });
  assertEquals(e3.appliedIndex, 9);
  assertEquals(e3.currentVersion, 2);
  await e3.close();
});

Deno.test("engine: sync makes unsynced writes and their applied index durable without a table", async () => {
  const fs = new MemFileSystem();
  await using e = await Engine.open("/db", { fs });
  await e.write(new WriteBatch().put(utf8("a"), utf8("1")), { appliedIndex: 3, sync: false });
  await e.write(new WriteBatch().put(utf8("b"), utf8("2")), { appliedIndex: 4, sync: false });
  assertTrue(e.appliedIndex < 3, "not durable yet");
  const lost = await Engine.open("/db", { fs: fs.crashClone() });
  assertEquals(await lost.get(utf8("a")), undefined, "a crash before sync loses them");
  await lost.close();
  await e.sync();
  assertEquals(e.appliedIndex, 4);
  assertEquals(e.stats().levels.reduce((n, l) => n + l.files, 0), 0, "no table was written");
  const recovered = await Engine.open("/db", { fs: fs.crashClone() });
  assertEquals(recovered.appliedIndex, 4);
  assertEquals(str((await recovered.get(utf8("b")))?.value), "2");
  await recovered.close();
});

Deno.test("engine: walBufferBytes holds unsynced writes in memory until the limit, a sync or close", async () => {
  // File sizes tell what was written: no preallocated space.
  const fs = new MemFileSystem();
  const walBytes = async () => {
    let n = 0;
    for (const name of await fs.list("/db")) {
      if (name.endsWith(".log")) n += (await fs.stat(`/db/${name}`))?.sizeBytes ?? 0;
    }
    return n;
  };
  const e = await Engine.open("/db", { fs, walBufferBytes: 200, walPreallocateBytes: 0 });
  const empty = await walBytes();
  await e.write(new WriteBatch().put(utf8("a"), utf8("1")), { sync: false, appliedIndex: 1 });
  await e.write(new WriteBatch().put(utf8("b"), utf8("2")), { sync: false, appliedIndex: 2 });
  assertEquals(str((await e.get(utf8("b")))?.value), "2", "readable at once");
  assertEquals(await walBytes(), empty, "nothing written yet");
  // Past the limit the buffered records are written (not synced).
  for (let i = 0; i < 10; i++) {
    await e.write(new WriteBatch().put(utf8(`k${i}`), utf8("v".repeat(20))), { sync: false });
  }
  assertTrue(await walBytes() > empty, "written once 200 bytes were held");
  // A synced write makes every earlier one durable too, in order.
  await e.write(new WriteBatch().put(utf8("c"), utf8("3")), { sync: true, appliedIndex: 3 });
  await e.write(new WriteBatch().put(utf8("d"), utf8("4")), { sync: false, appliedIndex: 4 });
  const crashed = await Engine.open("/db", { fs: fs.crashClone() });
  assertEquals(
    (await keys(crashed)).map((kv) => kv.split("=")[0]),
    ["a", "b", "c", "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"],
    "a crash loses only the write after the last sync",
  );
  assertEquals(crashed.appliedIndex, 3);
  await crashed.close();
  await e.close(); // writes and syncs what is held
  const reopened = await Engine.open("/db", { fs: fs.crashClone() });
  assertEquals(str((await reopened.get(utf8("d")))?.value), "4");
  assertEquals(reopened.appliedIndex, 4);
  await reopened.close();
});

Deno.test("engine: history yields every version including tombstones", async () => {
  const fs = new MemFileSystem();
  await using e = await Engine.open("/db", { fs });
  await put(e, "a", "1");
  await e.write(new WriteBatch().delete(utf8("a")));
  await put(e, "a", "3");
  await e.flush();
  await put(e, "b", "4");
  const h: string[] = [];
  for await (const x of e.history({ afterVersion: 1 })) {
    h.push(`${dec.decode(x.key)}@${x.version}${x.deleted ? "(del)" : ""}`);
  }
  assertEquals(h, ["a@3", "a@2(del)", "b@4"]);
});

Deno.test("engine: rotation and background flush keep every key readable", async () => {
  const fs = new MemFileSystem();
  await using e = await Engine.open("/db", {
    fs,
    memtableBytes: 8 * 1024,
    l1TargetBytes: 32 * 1024,
    targetFileBytes: 16 * 1024,
  });
  const writes: Promise<unknown>[] = [];
  for (let i = 0; i < 3000; i++) {
    writes.push(put(e, `key${i % 1000}`, `value${i}`));
    if (writes.length >= 64) await Promise.all(writes.splice(0));
  }
  await Promise.all(writes);
  await e.waitForBackground();
  for (let i = 0; i < 1000; i++) {
    const kv = await e.get(utf8(`key${i}`));
    assertEquals(str(kv?.value), `value${2000 + i}`);
  }
  const s = e.stats();
  assertTrue(s.flushes > 0, "flushed");
  assertTrue(s.compactions > 0, "compacted");
  assertEquals((await keys(e)).length, 1000);
});

Deno.test("engine: a scan is one consistent view while writes and flushes continue", async () => {
  const fs = new MemFileSystem();
  await using e = await Engine.open("/db", { fs, memtableBytes: 2048 });
  for (let i = 0; i < 300; i++) await put(e, `k${String(i).padStart(3, "0")}`, "old");
  const seen: string[] = [];
  let i = 0;
  for await (const kv of e.scan({ prefix: utf8("k") })) {
    seen.push(`${dec.decode(kv.key)}=${dec.decode(kv.value)}`);
    await put(e, `k${String(299 - (i % 300)).padStart(3, "0")}`, "new");
    await put(e, `k${String(i).padStart(3, "0")}x`, "inserted");
    if (i++ % 50 === 0) await e.flush();
  }
  assertEquals(seen.length, 300);
  assertTrue(seen.every((x) => x.endsWith("=old")), "no later write leaks into the view");
});

Deno.test("engine: destroy removes every engine file", async () => {
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs });
  await put(e, "a", "1");
  await e.flush();
  await e.close();
  await Engine.destroy("/db", { fs });
  assertEquals(fs.paths(), []);
  const e2 = await Engine.open("/db", { fs });
  assertEquals(await e2.get(utf8("a")), undefined);
  await e2.close();
  await Engine.destroy("/nothing-here", { fs });
});

Deno.test("engine: getNow answers from memory without a promise, or says a disk read is needed", async () => {
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs });
  await put(e, "a", "1");
  await e.write(new WriteBatch().delete(utf8("gone")));
  const hit = e.getNow(utf8("a"));
  assertTrue(hit !== readNeedsIo && str(hit?.value) === "1");
  assertEquals(e.getNow(utf8("gone")), undefined);
  await e.flush();
  await e.close();
  await using cold = await Engine.open("/db", { fs });
  assertEquals(cold.getNow(utf8("a")), readNeedsIo, "a cold table block needs a read");
  assertEquals(str((await cold.get(utf8("a")))?.value), "1");
  const warm = cold.getNow(utf8("a"));
  assertTrue(warm !== readNeedsIo && str(warm?.value) === "1", "cached after the read");
});

Deno.test("engine: getManyNow answers each key as getNow does, from the memtable, tables and cache", async () => {
  const fs = new MemFileSystem();
  const clock = new ManualClock(1_000);
  const e = await Engine.open("/db", { fs, clock });
  for (let i = 0; i < 40; i++) await put(e, `old${i}`, `o${i}`);
  await e.flush(); // These now live in a table.
  for (let i = 0; i < 40; i++) await put(e, `new${i}`, `n${i}`);
  await put(e, "old3", "rewritten");
  await e.write(new WriteBatch().delete(utf8("old5")).delete(utf8("new7")));
  await e.write(new WriteBatch().put(utf8("short"), utf8("x"), { expiresAtMs: 1_500 }));
  const keys = ["old3", "old5", "old9", "new0", "new7", "new39", "short", "absent", "", "old39"]
    .map(utf8);
  const answer = (r: unknown) =>
    r === readNeedsIo ? "io" : r === undefined ? "-" : str((r as { value: Uint8Array }).value);
  for (const atVersion of [undefined, 30, 50]) {
    for (const nowMs of [1_000, 2_000]) {
      const many: ReturnType<Engine["getNow"]>[] = [];
      e.getManyNow(keys, { atVersion, nowMs }, many);
      assertEquals(
        many.map(answer),
        keys.map((k) => answer(e.getNow(k, { atVersion, nowMs }))),
        `at ${atVersion}, now ${nowMs}`,
      );
    }
  }
  const many: ReturnType<Engine["getNow"]>[] = [];
  e.getManyNow(keys, { nowMs: 1_000 }, many);
  // The table's block is not cached yet: those keys need the async read.
  assertEquals(many.map(answer), ["rewritten", "-", "io", "n0", "-", "n39", "x", "-", "-", "io"]);
  assertEquals(str((await e.get(utf8("old9")))?.value), "o9");
  e.getManyNow(keys, { nowMs: 1_000 }, many);
  assertEquals(many.map(answer), ["rewritten", "-", "o9", "n0", "-", "n39", "x", "-", "-", "o39"]);
  await e.close();
});

for (const rowCacheBytes of [0, 1 << 20]) {
  Deno.test(`engine: getManyNow agrees with getNow with keys spread over levels, files and the memtable (row cache ${rowCacheBytes})`, async () => {
    const fs = new MemFileSystem();
    // With a row cache, warm reads fill it and getManyNow looks the keys up there together.
    const e = await Engine.open("/db", { fs, rowCacheBytes });
    const value = (k: number, round: number) => `${k}@${round}`;
    // Round 0 ends in L1 (compactAll); rounds 1 and 2 are L0 files; round 3 stays in the memtable.
    for (let round = 0; round < 4; round++) {
      const b = new WriteBatch();
      for (let k = round; k < 400; k += 1 + round) {
        b.put(utf8(`key${String(k).padStart(4, "0")}`), utf8(value(k, round)));
      }
      if (round === 2) {
        for (let k = 0; k < 400; k += 9) b.delete(utf8(`key${String(k).padStart(4, "0")}`));
      }
      await e.write(b);
      if (round === 0) await e.compactAll();
      else if (round < 3) await e.flush();
    }
    const levels = e.stats().levels.filter((l) => l.files > 0).map((l) => l.level);
    assertEquals(levels, [0, 1], "files in L0 and L1");
    const keys = Array.from({ length: 420 }, (_, k) => utf8(`key${String(k).padStart(4, "0")}`));
    const answer = (r: unknown) =>
      r === readNeedsIo ? "io" : r === undefined ? "-" : str((r as { value: Uint8Array }).value);
    const many: ReturnType<Engine["getNow"]>[] = [];
    for (const warm of [false, true]) {
      if (warm) { for (const k of keys) await e.get(k); // Every block in the cache.
       }
      for (const atVersion of [undefined, 1, 2, 3]) {
        e.getManyNow(keys, { atVersion }, many);
        assertEquals(
          many.map(answer),
          keys.map((k) => answer(e.getNow(k, { atVersion }))),
          `warm ${warm}, at ${atVersion}`,
        );
      }
    }
    assertTrue(many.every((r) => r !== readNeedsIo), "warm: no key needs a read");
    if (rowCacheBytes > 0) {
      const before = e.stats().rowCacheHits;
      e.getManyNow(keys, {}, many);
      assertTrue(e.stats().rowCacheHits > before, "getManyNow took answers from the row cache");
    }
    await e.close();
  });
}

Deno.test("engine: flush and compactAll finish with automatic compaction off", async () => {
  // An idle background loop (nothing to flush, no automatic compaction) once
  // ended before it was recorded as running, and every later flush waited forever.
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs, autoCompaction: false });
  for (let i = 0; i < 3; i++) {
    await put(e, `k${i}`, `v${i}`);
    await e.flush();
  }
  assertEquals(e.stats().levels[0].files, 3, "no automatic compaction");
  await e.compactAll();
  assertEquals(e.stats().levels[0].files, 0);
  assertEquals(str((await e.get(utf8("k2")))?.value), "v2");
  await e.close();
});

Deno.test("a write batch larger than a WAL record is refused with the limit; the engine keeps working", async () => {
  const fs = new MemFileSystem();
  const engine = await Engine.open("/big", { fs });
  const batch = new WriteBatch();
  const mib = new Uint8Array(1024 * 1024);
  for (let i = 0; i < 33; i++) batch.put(new TextEncoder().encode(`k${i}`), mib);
  await assertRejects(() => engine.write(batch), InvalidArgumentError, "WAL record limit");
  await engine.write(new WriteBatch().put(new TextEncoder().encode("small"), mib));
  assertEquals((await engine.get(new TextEncoder().encode("small")))?.value.length, mib.length);
  await engine.close();
  const back = await Engine.open("/big", { fs });
  assertEquals((await back.get(new TextEncoder().encode("small")))?.value.length, mib.length);
  await back.close();
});

Deno.test("engine: sync: false writes become durable in the background every walBytesPerSync bytes", async () => {
  const fs = new MemFileSystem();
  await using e = await Engine.open("/db", { fs, walBytesPerSync: 4096 });
  const value = new Uint8Array(100).fill(7);
  for (let i = 0; i < 100; i++) {
    await e.write(new WriteBatch().put(utf8(`k${String(i).padStart(3, "0")}`), value), {
      sync: false,
    });
  }
  await new Promise((r) => setTimeout(r, 0)); // let the last background fsync finish
  // No sync() was asked for, yet a crash now keeps all but the last (< 4 KiB) of ~12 KiB.
  const after = await Engine.open("/db", { fs: fs.crashClone() });
  const kept: string[] = [];
  for await (const kv of after.scan({ prefix: utf8("k") })) kept.push(dec.decode(kv.key));
  await after.close();
  assertTrue(kept.length >= 60 && kept.length < 100, `kept ${kept.length} of 100`);
  assertEquals(kept, kept.map((_, i) => `k${String(i).padStart(3, "0")}`), "a prefix, in order");
});

/**
 * A FileSystem over `mem` whose fsyncs of files named `*suffix` wait, from
 * `hold()` until `open()`. With `oneStep`, those files also have a one-step
 * durable append (as the real disk's write thread gives), which waits at
 * the gate before writing anything and fails while `failing` is set.
 */
function syncGate(mem: MemFileSystem, suffix: string, opts?: { oneStep?: boolean }) {
  let release: () => void = () => {};
  let gate: Promise<void> | undefined;
  const state = { failing: false };
  const gated = (path: string, h: FileHandle): FileHandle => {
    if (!path.endsWith(suffix)) return h;
    const file: FileHandle = {
      ...h,
      path: h.path,
      syncData: () => (gate ?? Promise.resolve()).then(() => h.syncData()),
    };
    if (opts?.oneStep) {
      file.appendDurable = async (data) => {
        await gate;
        if (state.failing) throw new IoError(h.path, "EIO (injected)");
        await h.append(data);
        await h.syncData();
      };
    }
    return file;
  };
  const fs: FileSystem = {
    create: async (path) => gated(path, await mem.create(path)),
    open: async (path) => gated(path, await mem.open(path)),
    readFile: (path) => mem.readFile(path),
    rename: (from, to) => mem.rename(from, to),
    remove: (path) => mem.remove(path),
    list: (dir) => mem.list(dir),
    mkdir: (dir) => mem.mkdir(dir),
    syncDir: (dir) => mem.syncDir(dir),
    stat: (path) => mem.stat(path),
  };
  return {
    fs,
    state,
    hold: () => (gate = new Promise<void>((r) => (release = r))),
    open: () => {
      gate = undefined;
      release();
    },
  };
}

for (const oneStep of [false, true]) {
  const how = oneStep ? "its one-step durable write" : "its fsync";
  Deno.test(`engine: a durable write applied to the memtable during ${how} stays invisible until it is acknowledged`, async () => {
    const mem = new MemFileSystem();
    const g = syncGate(mem, ".log", { oneStep });
    const e = await Engine.open("/db", { fs: g.fs });
    await put(e, "a", "1");
    const memtableBefore = e.stats().memtableBytes;
    g.hold();
    let acked = false;
    const writing = e.write(new WriteBatch().put(utf8("a"), utf8("2")).put(utf8("b"), utf8("1")))
      .then((r) => {
        acked = true;
        return r;
      });
    // Let the group's write finish and its memtable insert run; its fsync waits on the gate.
    for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 1));
    assertTrue(!acked, "the write waits for its fsync");
    assertTrue(e.stats().memtableBytes > memtableBefore, "the group is in the memtable already");
    assertEquals(e.currentVersion, 1);
    assertEquals(str((await e.get(utf8("a")))?.value), "1");
    assertEquals(str((await e.get(utf8("a"), { atVersion: 1_000 }))?.value), "1");
    assertEquals(await e.get(utf8("b")), undefined);
    const now = e.getNow(utf8("a"));
    assertTrue(
      now !== readNeedsIo && str(now?.value) === "1",
      "getNow reads the published version",
    );
    const many: Parameters<Engine["getManyNow"]>[2] = [];
    e.getManyNow([utf8("a"), utf8("b")], undefined, many);
    assertEquals(many.map((kv) => (kv === readNeedsIo ? "io" : str(kv?.value))), ["1", undefined]);
    assertEquals(await keys(e), ["a=1"]);
    assertEquals(await keys(e, { atVersion: 1_000 }), ["a=1"]);
    const history: number[] = [];
    for await (const h of e.history({ afterVersion: 0 })) history.push(h.version);
    assertEquals(history, [1]);
    const snap = e.snapshot();
    assertEquals(snap.version, 1);
    snap.release();
    g.open();
    assertEquals((await writing).version, 2);
    assertEquals(str((await e.get(utf8("a")))?.value), "2");
    assertEquals(str((await e.get(utf8("b")))?.value), "1");
    assertEquals(await keys(e), ["a=2", "b=1"]);
    await e.close();
  });
}

Deno.test("engine: a failed one-step durable write is never seen and stops writes, not reads", async () => {
  const mem = new MemFileSystem();
  const g = syncGate(mem, ".log", { oneStep: true });
  const e = await Engine.open("/db", { fs: g.fs });
  await put(e, "a", "1");
  g.state.failing = true;
  await assertRejects(
    () => e.write(new WriteBatch().put(utf8("a"), utf8("2")).put(utf8("b"), utf8("1"))),
    IoError,
    "EIO",
  );
  g.state.failing = false;
  // Its memtable entries went in beside the write: nothing may ever publish their version.
  await assertRejects(() => put(e, "c", "1"), IoError, "EIO");
  assertEquals(e.currentVersion, 1);
  assertEquals(str((await e.get(utf8("a")))?.value), "1");
  assertEquals(await e.get(utf8("b")), undefined);
  assertEquals(await keys(e, { atVersion: 1_000 }), ["a=1"]);
  await e.close().catch(() => {});
});

Deno.test("engine: compactHistory does not wait for a flush in progress", async () => {
  // Table fsyncs wait on a gate: the flush below stays in progress until it opens.
  const mem = new MemFileSystem();
  const g = syncGate(mem, ".sst");
  g.hold();
  const e = await Engine.open("/db", { fs: g.fs });
  for (let i = 0; i < 10; i++) await e.write(new WriteBatch().put(utf8(`k${i}`), utf8(`v${i}`)));
  const flushing = e.flush();
  await new Promise((r) => setTimeout(r, 10));
  let flushed = false;
  void flushing.then(() => (flushed = true));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    e.compactHistory(5).then(() => "compacted"),
    new Promise<string>((r) => (timer = setTimeout(() => r("still waiting after 2 s"), 2000))),
  ]);
  clearTimeout(timer);
  assertEquals(outcome, "compacted");
  assertTrue(!flushed, "the flush is still waiting on its table fsync");
  assertEquals(e.compactedVersion, 5);
  await assertRejects(() => e.get(utf8("k1"), { atVersion: 4 }), CompactedError);
  g.open();
  await flushing;
  await e.close();
  const reopened = await Engine.open("/db", { fs: mem });
  assertEquals(reopened.compactedVersion, 5, "the compaction point is in the manifest");
  assertEquals(str((await reopened.get(utf8("k9")))?.value), "v9");
  await reopened.close();
});

Deno.test("engine: flush() is not slowed by the pauses of background work", async () => {
  // Pauses of a minute between 2 ms slices: a flush someone waits for must take none of them.
  const e = await Engine.open("/db", { fs: new MemFileSystem(), backgroundRestMs: 60_000 });
  const batch = new WriteBatch();
  for (let i = 0; i < 20_000; i++) batch.put(utf8(`key${String(i).padStart(6, "0")}`), utf8("v"));
  await e.write(batch, { sync: false });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    e.flush().then(() => "flushed"),
    new Promise<string>((r) => (timer = setTimeout(() => r("still flushing after 10 s"), 10_000))),
  ]);
  clearTimeout(timer);
  assertEquals(outcome, "flushed");
  assertEquals(e.stats().levels[0].files, 1);
  await e.close();
});

Deno.test("engine: the row cache answers table reads and never outlives a newer flush", async () => {
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs, rowCacheBytes: 1 << 20 });
  const get = async (k: string, atVersion?: number) => {
    const kv = await e.get(utf8(k), { atVersion });
    return kv === undefined ? undefined : new TextDecoder().decode(kv.value);
  };
  const v1 = (await e.write(new WriteBatch().put(utf8("k"), utf8("one")))).version;
  await e.write(new WriteBatch().put(utf8("gone"), utf8("x")));
  await e.write(new WriteBatch().delete(utf8("gone")));
  await e.flush();
  assertEquals([await get("k"), await get("k"), await get("gone")], ["one", "one", undefined]);
  const hitsBefore = e.stats().rowCacheHits;
  assertEquals(await get("k"), "one");
  assertEquals(e.stats().rowCacheHits, hitsBefore + 1);
  // A newer version in the memtable wins; once flushed, the table's newer one does.
  const v2 = (await e.write(new WriteBatch().put(utf8("k"), utf8("two")))).version;
  assertEquals(await get("k"), "two");
  await e.flush();
  assertEquals([await get("k"), await get("k")], ["two", "two"]);
  // A read below the cached version goes to the tables.
  assertEquals([await get("k", v1), await get("k", v2 - 1), await get("k", v2)], [
    "one",
    "one",
    "two",
  ]);
  // A key no table holds is remembered as absent, until a flush brings it.
  assertEquals(await get("never"), undefined);
  const absentHits = e.stats().rowCacheHits;
  assertEquals([await get("never"), e.stats().rowCacheHits], [undefined, absentHits + 1]);
  const v3 = (await e.write(new WriteBatch().put(utf8("never"), utf8("now")))).version;
  await e.flush();
  assertEquals([await get("never"), await get("never", v3 - 1)], ["now", undefined]);
  // fillCache: false reads the tables and leaves the cache as it was.
  const quiet = async () => (await e.get(utf8("elsewhere"), { fillCache: false }))?.value;
  const quietHits = e.stats().rowCacheHits;
  assertEquals([await quiet(), await quiet(), e.stats().rowCacheHits], [
    undefined,
    undefined,
    quietHits,
  ]);
  await e.close();
});

Deno.test("engine: point reads agree with a model of every write through flushes, compactions and history compaction (randomized)", async () => {
  const first = Number(Deno.env.get("ENGINE_MODEL_SEED") ?? Date.now() % 1_000_000);
  console.log(`engine model seed ${first} (replay: ENGINE_MODEL_SEED=${first})`);
  const dec = new TextDecoder();
  for (let seed = first; seed < first + 3; seed++) {
    let state = seed;
    const rnd = (n: number) => (state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff) % n;
    // Tiny memtables, tables and blocks, and a row cache small enough to evict: every layer
    // a read can be answered from (memtable, row cache, cached blocks, cold tables) is in play.
    await using e = await Engine.open("/db", {
      fs: new MemFileSystem(),
      rowCacheBytes: 2_000 + rnd(20_000),
      memtableBytes: 2_048,
      targetFileBytes: 2_048,
      blockSizeBytes: 256,
      l0CompactionTrigger: 2,
    });
    /** Each key's history: [version, value or undefined for a delete], oldest first. */
    const history = new Map<string, Array<[number, string | undefined]>>();
    const expected = (key: string, version: number) => {
      let value: string | undefined;
      for (const [v, x] of history.get(key) ?? []) if (v <= version) value = x;
      return value;
    };
    const keys = Array.from({ length: 60 }, (_, i) => `key${i}`);
    let compacted = 0;
    for (let step = 0; step < 4_000; step++) {
      const op = rnd(20);
      if (op < 6) {
        const key = keys[rnd(keys.length)];
        const value = rnd(4) === 0 ? undefined : `v${step}`;
        const batch = value === undefined
          ? new WriteBatch().delete(utf8(key))
          : new WriteBatch().put(utf8(key), utf8(value));
        const { version } = await e.write(batch);
        if (!history.has(key)) history.set(key, []);
        history.get(key)!.push([version, value]);
      } else if (op === 6 && rnd(10) === 0) await e.compactAll();
      else if (op === 7 && rnd(5) === 0) {
        const v = e.currentVersion - rnd(20);
        if (v > compacted) await e.compactHistory(compacted = v);
      } else if (op === 8 && rnd(5) === 0) await e.flush();
      else {
        // A pipeline of reads at the newest version or an older one still kept.
        const names = Array.from({ length: 1 + rnd(8) }, () => keys[rnd(keys.length)]);
        const atVersion = rnd(2) === 0
          ? undefined
          : Math.max(compacted, e.currentVersion - rnd(40));
        const version = atVersion ?? e.currentVersion;
        const many: (ReturnType<typeof e.getNow>)[] = [];
        e.getManyNow(names.map(utf8), { atVersion, nowMs: 0 }, many);
        for (let j = 0; j < names.length; j++) {
          const want = expected(names[j], version);
          const text = (kv: ReturnType<typeof e.getNow>) =>
            kv === readNeedsIo ? want : kv === undefined ? undefined : dec.decode(kv.value);
          const got = [
            text((await e.get(utf8(names[j]), { atVersion, nowMs: 0 })) ?? undefined),
            text(e.getNow(utf8(names[j]), { atVersion, nowMs: 0 })),
            text(many[j]),
          ];
          assertEquals(got, [want, want, want], `seed ${seed} step ${step} ${names[j]}@${version}`);
        }
      }
    }
    const stats = e.stats();
    assertTrue(
      stats.rowCacheHits > 1_000 && stats.flushes > 10,
      `seed ${seed}: ${JSON.stringify(stats)}`,
    );
  }
});

Deno.test("a failed WAL rotation stops writes, and the store reopens with every acknowledged write", async () => {
  const fs = new MemFileSystem();
  const e = await Engine.open("/db", { fs, walPreallocateBytes: 0, autoCompaction: false });
  for (let i = 0; i < 10; i++) await e.write(new WriteBatch().put(utf8(`k${i}`), utf8(`v${i}`)));
  // The directory fsync after creating the next segment fails, and so does removing it again.
  fs.injectError({ path: "/db", op: "syncDir", code: "EIO" });
  fs.injectError({ op: "remove", code: "EIO" });
  await assertRejects(() => e.flush(), IoError);
  // Nothing more goes to the sealed segment: appending there while a newer segment exists
  // would turn a torn append into corruption at the next open.
  await assertRejects(() => e.write(new WriteBatch().put(utf8("late"), utf8("x"))), IoError);
  await fs.syncDir("/db"); // the directory entry reaches the disk anyway
  const reopened = await Engine.open("/db", { fs: fs.crashClone(), walPreallocateBytes: 0 });
  for (let i = 0; i < 10; i++) {
    assertEquals((await reopened.get(utf8(`k${i}`)))?.value, utf8(`v${i}`));
  }
  await reopened.close();
  await e.close().catch(() => {});
});

Deno.test("a delete at the compacted version stays in history after a full compaction", async () => {
  await using e = await Engine.open("/db", { fs: new MemFileSystem() });
  await e.write(new WriteBatch().put(utf8("a"), utf8("1"))); // version 1
  await e.write(new WriteBatch().delete(utf8("a"))); // version 2
  await e.compactHistory(2);
  const history = async () => {
    const out: string[] = [];
    for await (const h of e.history({ afterVersion: 1 })) {
      out.push(`${h.version}${h.deleted ? "x" : ""}`);
    }
    return out;
  };
  assertEquals(await history(), ["2x"]);
  await e.compactAll(); // to the bottom level, where a tombstone below the horizon is dropped
  assertEquals(await history(), ["2x"], "a watch from the compacted revision still sees it");
});

Deno.test("Engine: close() finishes while writes wait for room in a full L0", async () => {
  const engine = await Engine.open("/db", {
    fs: new MemFileSystem(),
    memtableBytes: 1024,
    l0CompactionTrigger: 2,
    l0StopWritesTrigger: 3,
    backgroundRestMs: 0,
    syncWrites: false,
    walPreallocateBytes: 0,
  });
  const writes: Promise<unknown>[] = [];
  // Writes issued back to back fill L0 to its stop trigger; the rest wait for room.
  for (let i = 0; i < 3_000 && engine.stats().levels[0].files < 3; i++) {
    writes.push(engine.write(new WriteBatch().put(utf8(`k${i}`), new Uint8Array(2_000))));
    await Promise.resolve();
  }
  assertEquals(engine.stats().levels[0].files, 3);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    engine.close().then(() => "closed"),
    new Promise((resolve) => (timer = setTimeout(() => resolve("still closing after 5 s"), 5_000))),
  ]);
  clearTimeout(timer);
  assertEquals(outcome, "closed");
  await Promise.allSettled(writes);
});
