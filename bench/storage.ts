/**
 * Storage engine micro-benchmarks: durable group-commit WAL appends beside
 * the disk's raw durable-write rates, non-durable puts, point reads from the memtable
 * and from SSTables with a warm block cache, prefix scans, compaction
 * throughput and write amplification. Runs in a temp dir on the real disk and
 * prints its setup and one table. `deno task bench storage` calls `main`.
 *
 * Flags: --quick (smaller runs), --dir=PATH (parent of the temp dir).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Engine } from "../lib/storage/engine.ts";
import { WriteBatch } from "../lib/storage/write_batch.ts";
import { SeededRandom } from "../lib/common/random.ts";
import { SyncWriteThread } from "../lib/storage/sync_write_thread.ts";

interface Row {
  name: string;
  value: string;
  note: string;
}

/** Size of the zero-filled files the raw-rate probes write into. */
const probeFileBytes = 8 << 20;

/** A new file of `probeFileBytes` zeros, synced: space a durable append overwrites. */
async function zeroFilledFile(path: string): Promise<Deno.FsFile> {
  const zeros = new Uint8Array(probeFileBytes);
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  for (let done = 0; done < zeros.length;) done += await f.write(zeros.subarray(done));
  await f.syncData();
  return f;
}

/**
 * The disk's raw rate of 64-byte write + fdatasync pairs into a zero-filled,
 * synced file: how the WAL appends durably (no file growth to commit), so
 * the ceiling for group commit.
 */
async function rawPreallocatedFsyncRate(dir: string, durationMs: number): Promise<number> {
  const path = `${dir}/fsync-prealloc-probe`;
  const f = await zeroFilledFile(path);
  await f.seek(0, Deno.SeekMode.Start);
  const rate = await timedWriteSyncs(f, durationMs, probeFileBytes / 64);
  f.close();
  await Deno.remove(path);
  return rate;
}

/**
 * The rate of 64-byte durable writes into a zero-filled, synced file through
 * the durable-write thread (one O_DSYNC write each): how the WAL appends
 * durably on this platform, so the ceiling for group commit. Undefined
 * where the thread cannot start.
 */
async function rawThreadWriteRate(dir: string, durationMs: number): Promise<number | undefined> {
  const thread = SyncWriteThread.shared();
  if (thread === undefined) return undefined;
  const path = `${dir}/dsync-probe`;
  (await zeroFilledFile(path)).close();
  const { slot } = await thread.open(path);
  const buf = new Uint8Array(64).fill(1);
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < durationMs && (n + 1) * 64 <= probeFileBytes) {
    await thread.write(slot, n * 64, buf);
    n++;
  }
  const rate = n / ((performance.now() - t0) / 1000);
  await thread.close(slot);
  await Deno.remove(path);
  return rate;
}

/** 64-byte write + fdatasync pairs on `f` for `durationMs` (at most `maxWrites`): their rate. */
async function timedWriteSyncs(f: Deno.FsFile, durationMs: number, maxWrites: number) {
  const buf = new Uint8Array(64).fill(1);
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < durationMs && n < maxWrites) {
    await f.write(buf);
    await f.syncData();
    n++;
  }
  return n / ((performance.now() - t0) / 1000);
}

function key(i: number): Uint8Array {
  return new TextEncoder().encode(`key${String(i).padStart(10, "0")}`);
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** The disk's raw rate of 64-byte write + fdatasync pairs in `dir`: the baseline for durable rates. */
export async function rawFsyncRate(dir: string, durationMs: number): Promise<number> {
  const path = `${dir}/fsync-probe`;
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  const rate = await timedWriteSyncs(f, durationMs, Number.POSITIVE_INFINITY);
  f.close();
  await Deno.remove(path);
  return rate;
}

/** Puts from concurrent writers after a warm-up: the rate and the fsyncs of the measured run. */
async function concurrentPuts(
  e: Engine,
  writers: number,
  opsPerWriter: number,
  sync: boolean,
): Promise<{ rate: number; syncs: number; recordsPerSync: number }> {
  const value = new Uint8Array(64).fill(7);
  // Keys are made up front: the benchmark measures the engine, not TextEncoder.
  const keys = Array.from({ length: writers * opsPerWriter }, (_, i) => key(i));
  const run = (ops: number) =>
    Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let i = 0; i < ops; i++) {
          await e.write(new WriteBatch().put(keys[w * opsPerWriter + i], value), { sync });
        }
      }),
    );
  // Warm up the JIT (a fifth of the run, the same keys), then measure.
  await run(Math.ceil(opsPerWriter / 5));
  const before = e.stats();
  const t0 = performance.now();
  await run(opsPerWriter);
  const rate = (writers * opsPerWriter) / ((performance.now() - t0) / 1000);
  const after = e.stats();
  const syncs = after.walSyncs - before.walSyncs;
  const records = after.walRecords - before.walRecords;
  return { rate, syncs, recordsPerSync: syncs === 0 ? 0 : records / syncs };
}

async function randomGets(e: Engine, keyCount: number, ops: number, seed: number): Promise<number> {
  const rnd = new SeededRandom(seed);
  const keys = Array.from({ length: 4096 }, () => key(rnd.nextInt(keyCount)));
  let found = 0;
  const t0 = performance.now();
  for (let i = 0; i < ops; i++) {
    if ((await e.get(keys[i & 4095])) !== undefined) found++;
  }
  const rate = ops / ((performance.now() - t0) / 1000);
  if (found !== ops) throw new Error(`benchmark bug: ${ops - found} keys missing`);
  return rate;
}

/** Runs the storage benchmarks and prints a table. */
export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { quick: { type: "boolean" }, dir: { type: "string" } },
    allowPositionals: true,
  });
  const quick = values.quick ?? false;
  const parent = values.dir ?? Deno.env.get("TMPDIR") ?? "/tmp";
  const root = await Deno.makeTempDir({ dir: parent, prefix: "rustkvd-bench-storage-" });
  const writers = 64;
  const durableOps = quick ? 500 : 3000; // per writer
  const keyCount = quick ? 50_000 : 200_000;
  const rows: Row[] = [];
  console.log("rustkvd storage benchmark");
  console.log(
    `  deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, dir ${root}`,
  );
  console.log(
    `  ${writers} concurrent writers, 64-byte values, 14-byte keys, one put per batch ` +
      `(puts timed after a warm-up of a fifth as many); ` +
      `${keyCount.toLocaleString()} keys for reads`,
  );
  try {
    // 1. Raw durable-write rates, then durable group commit.
    const fsyncRate = await rawFsyncRate(root, quick ? 500 : 1500);
    rows.push({
      name: "raw fsync (64 B write + fdatasync)",
      value: `${fmt(fsyncRate)}/s`,
      note: "disk baseline: an append that grows the file",
    });
    const preallocatedRate = await rawPreallocatedFsyncRate(root, quick ? 500 : 1500);
    rows.push({
      name: "raw fsync, preallocated file",
      value: `${fmt(preallocatedRate)}/s`,
      note: "64 B write + fdatasync over zeros (the WAL's way without the thread)",
    });
    const threadRate = await rawThreadWriteRate(root, quick ? 500 : 1500);
    if (threadRate !== undefined) {
      rows.push({
        name: "raw O_DSYNC write, preallocated",
        value: `${fmt(threadRate)}/s`,
        note: "64 B, one call on the durable-write thread: how the WAL appends durably here",
      });
    }
    const bestRate = Math.max(preallocatedRate, threadRate ?? 0);
    {
      const e = await Engine.open(`${root}/durable`);
      const { rate, syncs, recordsPerSync } = await concurrentPuts(e, writers, durableOps, true);
      rows.push({
        name: "durable put, group commit",
        value: `${fmt(rate)} ops/s`,
        note: `${recordsPerSync.toFixed(1)} records/fsync, ${fmt(syncs)} fsyncs (after a warm-up)`,
      });
      // Each writer waits for its fsync, so one durable write carries at most `writers` puts.
      rows.push({
        name: "ceiling: writers x best raw rate",
        value: `${fmt(writers * bestRate)} ops/s`,
        note: `the most ${writers} waiting writers can get from this disk; durable put reached ${
          Math.round((100 * rate) / (writers * bestRate))
        } %`,
      });
      await e.close();
    }
    // 2. Non-durable puts.
    {
      const e = await Engine.open(`${root}/nosync`);
      const { rate } = await concurrentPuts(e, writers, durableOps, false);
      rows.push({
        name: "non-durable put (sync: false)",
        value: `${fmt(rate)} ops/s`,
        note: `${writers} writers`,
      });
      await e.close();
    }
    // 3. Reads: memtable, then SSTables with a warm cache.
    {
      const e = await Engine.open(`${root}/reads`, { syncWrites: false });
      const value = new Uint8Array(64).fill(3);
      for (let i = 0; i < keyCount; i += 1000) {
        const b = new WriteBatch();
        for (let j = i; j < i + 1000 && j < keyCount; j++) b.put(key(j), value);
        await e.write(b);
      }
      const ops = quick ? 100_000 : 400_000;
      await randomGets(e, keyCount, 50_000, 1); // Warm up the JIT.
      const memRate = await randomGets(e, keyCount, ops, 1);
      rows.push({
        name: "random get, memtable",
        value: `${fmt(memRate)} ops/s`,
        note: `${fmt(keyCount)} keys`,
      });
      const t0 = performance.now();
      await e.compactAll();
      const compactMs = performance.now() - t0;
      await randomGets(e, keyCount, 4096, 2); // Warm the cache.
      const sstRate = await randomGets(e, keyCount, ops, 2);
      const s = e.stats();
      rows.push({
        name: "random get, SSTables, warm cache",
        value: `${fmt(sstRate)} ops/s`,
        note: `cache hit rate ${(s.blockCacheHitRate * 100).toFixed(1)}%, ` +
          s.levels.filter((l) => l.files > 0).map((l) => `L${l.level}:${l.files}`).join(" "),
      });
      // Prefix scan over every key.
      const t1 = performance.now();
      let n = 0;
      for await (const _ of e.scan({ prefix: new TextEncoder().encode("key") })) n++;
      const scanRate = n / ((performance.now() - t1) / 1000);
      if (n !== keyCount) throw new Error(`scan saw ${n} keys, expected ${keyCount}`);
      rows.push({
        name: "prefix scan",
        value: `${fmt(scanRate)} keys/s`,
        note: `${fmt(n)} keys from SSTables`,
      });
      rows.push({
        name: "flush + compactAll",
        value: `${
          ((s.flushBytesWritten + s.compactionBytesRead + s.compactionBytesWritten) / 1048576 /
            (compactMs / 1000)).toFixed(1)
        } MB/s`,
        note: `${(s.compactionBytesWritten / 1048576).toFixed(1)} MB written in ${
          fmt(compactMs)
        } ms`,
      });
      await e.close();
      // The same reads through a row cache the size a node's state machine uses.
      const rowCacheBytes = 32 << 20;
      const cached = await Engine.open(`${root}/reads`, { syncWrites: false, rowCacheBytes });
      await randomGets(cached, keyCount, 8192, 2); // Open the tables, fill the caches.
      const rowRate = await randomGets(cached, keyCount, ops, 2);
      const rs = cached.stats();
      rows.push({
        name: "random get, SSTables, row cache",
        value: `${fmt(rowRate)} ops/s`,
        note: `rowCacheBytes ${rowCacheBytes >> 20} MiB (a node's); hit rate ${
          (rs.rowCacheHits / Math.max(1, rs.rowCacheHits + rs.rowCacheMisses) * 100).toFixed(1)
        }%`,
      });
      await cached.close();
    }
    // 4. Compaction under a random-overwrite workload: throughput and write amplification.
    {
      const e = await Engine.open(`${root}/wamp`, {
        syncWrites: false,
        memtableBytes: 1 << 20,
        l1TargetBytes: 4 << 20,
        targetFileBytes: 1 << 20,
      });
      const rnd = new SeededRandom(3);
      const value = new Uint8Array(100).fill(5);
      const total = quick ? 100_000 : 400_000;
      const t0 = performance.now();
      for (let i = 0; i < total; i += 100) {
        const b = new WriteBatch();
        for (let j = 0; j < 100; j++) b.put(key(rnd.nextInt(total)), value);
        await e.write(b);
      }
      await e.flush();
      await e.waitForBackground();
      const ms = performance.now() - t0;
      const s = e.stats();
      rows.push({
        name: "background compaction",
        value: `${
          ((s.compactionBytesRead + s.compactionBytesWritten) / 1048576 / (ms / 1000)).toFixed(1)
        } MB/s`,
        note: `${s.compactions} compactions during ${fmt(total)} random puts, ${fmt(ms)} ms`,
      });
      rows.push({
        name: "write amplification",
        value: s.writeAmplification.toFixed(2),
        note: `(WAL ${(s.walBytesWritten / 1048576).toFixed(0)} + flush ${
          (s.flushBytesWritten / 1048576).toFixed(0)
        } + compaction ${(s.compactionBytesWritten / 1048576).toFixed(0)} MB) / user ${
          (s.userBytesWritten / 1048576).toFixed(0)
        } MB`,
      });
      await e.close();
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
  const w0 = Math.max(...rows.map((r) => r.name.length), 6);
  const w1 = Math.max(...rows.map((r) => r.value.length), 6);
  console.log("");
  console.log(`| ${"metric".padEnd(w0)} | ${"result".padEnd(w1)} | notes`);
  console.log(`|-${"-".repeat(w0)}-|-${"-".repeat(w1)}-|------`);
  for (const r of rows) console.log(`| ${r.name.padEnd(w0)} | ${r.value.padEnd(w1)} | ${r.note}`);
}

if (import.meta.main) await main(Deno.args);
