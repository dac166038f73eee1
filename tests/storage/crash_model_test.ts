/**
 * Randomized crash testing against a model map (Pebble's metamorphic idea,
 * on LevelDB's fault-injection Env): each seed drives one engine on the
 * crashable in-memory file system through puts, deletes, batches, concurrent
 * writers, reads at old versions, scans, flushes, forced compactions, history
 * compaction and crashes (some tearing unsynced bytes), checking every read
 * against the model. After a crash the engine must hold exactly the model's
 * state at some version between the last synced write and the last write.
 *
 * A failure prints its seed; replay it with `SEED=<n> deno test -A tests/storage`.
 * `CRASH_SEEDS=<n>` changes how many seeds run (default 200).
 */

import { fromUtf8, utf8 } from "../../lib/common/bytes.ts";
import { CompactedError } from "../../lib/common/errors.ts";
import { SeededRandom, testSeed } from "../../lib/common/random.ts";
import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import { Engine } from "../../lib/storage/engine.ts";
import { MemFileSystem } from "../../lib/storage/mem_fs.ts";
import { WriteBatch } from "../../lib/storage/write_batch.ts";

interface Write {
  version: number;
  key: string;
  value: string | undefined; // undefined = delete
  appliedIndex: number;
}

/** Every write acknowledged so far, in version order. */
class Model {
  writes: Write[] = [];
  syncedVersion = 0;

  stateAt(version: number): Map<string, string> {
    const m = new Map<string, string>();
    for (const w of this.writes) {
      if (w.version > version) break;
      if (w.value === undefined) m.delete(w.key);
      else m.set(w.key, w.value);
    }
    return m;
  }

  get lastVersion(): number {
    return this.writes.length === 0 ? 0 : this.writes[this.writes.length - 1].version;
  }

  truncate(version: number): void {
    this.writes = this.writes.filter((w) => w.version <= version);
  }

  appliedIndexAt(version: number): number {
    let a = -1;
    for (const w of this.writes) if (w.version <= version && w.appliedIndex > a) a = w.appliedIndex;
    return a;
  }
}

async function engineState(e: Engine, atVersion?: number): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  let prev = "";
  for await (const kv of e.scan({ atVersion })) {
    const k = fromUtf8(kv.key);
    assertTrue(k > prev, "scan keys strictly ascending");
    prev = k;
    m.set(k, fromUtf8(kv.value));
  }
  return m;
}

function sameMaps(actual: Map<string, string>, expected: Map<string, string>, what: string): void {
  assertEquals([...actual].sort(), [...expected].sort(), what);
}

async function runSeed(seed: number, steps: number): Promise<void> {
  const rnd = new SeededRandom(seed);
  // Odd seeds make durable writes one-step (only the appended bytes become durable, as O_DSYNC).
  let fs = new MemFileSystem({ oneStepAppends: seed % 2 === 1 });
  const options = () => ({
    fs,
    memtableBytes: 1024 + rnd.nextInt(4096),
    l0CompactionTrigger: 2 + rnd.nextInt(3),
    l1TargetBytes: 4096 + rnd.nextInt(8192),
    targetFileBytes: 2048 + rnd.nextInt(4096),
    blockSizeBytes: 128 + rnd.nextInt(512),
    blockCacheBytes: rnd.nextInt(2) === 0 ? 0 : 64 * 1024,
    // Half the runs cache rows, some in a budget small enough to evict.
    rowCacheBytes: rnd.nextInt(2) === 0
      ? 0
      : rnd.nextInt(2) === 0
      ? 512 + rnd.nextInt(2048)
      : 1 << 20,
    maxOpenTables: 4 + rnd.nextInt(8),
    maxManifestBytes: rnd.nextInt(2) === 0 ? 512 : 1 << 20,
    // Half the runs hold unsynced WAL records in memory (as a node's state machine does).
    walBufferBytes: rnd.nextInt(2) === 0 ? 0 : 64 + rnd.nextInt(2048),
  });
  let e = await Engine.open("/db", options());
  const model = new Model();
  let compacted = 0;
  let appliedIndex = 0;
  const keySpace = 10 + rnd.nextInt(40);
  const key = () => `k${String(rnd.nextInt(keySpace)).padStart(3, "0")}`;
  const value = () => `v${rnd.nextU32().toString(36)}${"x".repeat(rnd.nextInt(40))}`;

  const trace = Deno.env.get("CRASH_TRACE") === "1";
  for (let step = 0; step < steps; step++) {
    const op = rnd.nextInt(100);
    if (trace) console.log(`step ${step} op ${op} files ${fs.paths().join(",")}`);
    if (op < 45) {
      // A few concurrent writers (group commit), each one batch of 1-3 ops.
      const writers = 1 + rnd.nextInt(rnd.nextInt(4) === 0 ? 6 : 2);
      const batches: {
        batch: WriteBatch;
        ops: { key: string; value: string | undefined }[];
        sync: boolean;
        ai: number;
      }[] = [];
      for (let w = 0; w < writers; w++) {
        const batch = new WriteBatch();
        const ops: { key: string; value: string | undefined }[] = [];
        const n = 1 + rnd.nextInt(3);
        const seen = new Set<string>();
        for (let i = 0; i < n; i++) {
          const k = key();
          if (seen.has(k)) continue;
          seen.add(k);
          if (rnd.nextInt(5) === 0) {
            batch.delete(utf8(k));
            ops.push({ key: k, value: undefined });
          } else {
            const v = value();
            batch.put(utf8(k), utf8(v));
            ops.push({ key: k, value: v });
          }
        }
        batches.push({ batch, ops, sync: rnd.nextInt(4) !== 0, ai: ++appliedIndex });
      }
      const results = await Promise.all(
        batches.map((x) => e.write(x.batch, { sync: x.sync, appliedIndex: x.ai })),
      );
      results.forEach((r, i) => {
        assertTrue(r.version > model.lastVersion, "versions increase");
        for (const o of batches[i].ops) {
          model.writes.push({
            version: r.version,
            key: o.key,
            value: o.value,
            appliedIndex: batches[i].ai,
          });
        }
      });
      // A synced write in a group makes every earlier record durable too.
      const syncedVersions = results.filter((_, i) => batches[i].sync).map((r) => r.version);
      if (syncedVersions.length > 0) {
        model.syncedVersion = Math.max(model.syncedVersion, ...syncedVersions);
      }
    } else if (op < 60) {
      const k = key();
      const at = rnd.nextInt(3) === 0 && model.lastVersion > compacted
        ? compacted + rnd.nextInt(model.lastVersion - compacted + 1)
        : undefined;
      const want = model.stateAt(at ?? Number.MAX_SAFE_INTEGER).get(k);
      // Read again at times: a repeat finds warm blocks and the row cache.
      for (let rep = 1 + rnd.nextInt(3); rep > 0; rep--) {
        const got = await e.get(utf8(k), { atVersion: at });
        assertEquals(
          got === undefined ? undefined : fromUtf8(got.value),
          want,
          `get ${k} at ${at}`,
        );
      }
    } else if (op < 66) {
      const at = model.lastVersion > compacted && rnd.nextInt(2) === 0
        ? compacted + rnd.nextInt(model.lastVersion - compacted + 1)
        : undefined;
      sameMaps(await engineState(e, at), model.stateAt(at ?? model.lastVersion), `scan at ${at}`);
    } else if (op < 72) {
      await e.flush();
    } else if (op < 75) {
      await e.compactAll();
    } else if (op < 78) {
      if (model.lastVersion > compacted) {
        compacted = compacted + rnd.nextInt(model.lastVersion - compacted + 1);
        await e.compactHistory(compacted);
        if (compacted > 1) {
          let threw = false;
          try {
            await e.get(utf8(key()), { atVersion: compacted - 1 });
          } catch (err) {
            threw = err instanceof CompactedError;
          }
          assertTrue(threw, "reads below the compacted version fail");
        }
      }
    } else if (op < 90) {
      // Crash: drop the engine without closing; maybe tear unsynced bytes. Half the time
      // the crash lands while writes are in flight (some acknowledged, some not).
      const inflight: {
        p: Promise<{ version: number }>;
        key: string;
        value: string;
        sync: boolean;
        ai: number;
        acked: boolean;
      }[] = [];
      if (rnd.nextInt(2) === 0) {
        const n = 1 + rnd.nextInt(6);
        for (let i = 0; i < n; i++) {
          const k = key();
          const v = value();
          const sync = rnd.nextInt(3) !== 0;
          const ai = ++appliedIndex;
          const w = {
            p: e.write(new WriteBatch().put(utf8(k), utf8(v)), { sync, appliedIndex: ai }),
            key: k,
            value: v,
            sync,
            ai,
            acked: false,
          };
          w.p.then(() => (w.acked = true), () => {});
          inflight.push(w);
        }
        const spins = rnd.nextInt(12);
        for (let i = 0; i < spins; i++) await null;
      }
      const tear = rnd.nextInt(2) === 0 ? { tearRandom: rnd } : {};
      const crashed = fs.crashClone(tear);
      const ackedBeforeCrash = inflight.map((w) => w.acked);
      // The abandoned engine still finishes them on the old disk: learn their versions.
      for (let i = 0; i < inflight.length; i++) {
        const w = inflight[i];
        const r = await w.p;
        model.writes.push({ version: r.version, key: w.key, value: w.value, appliedIndex: w.ai });
        if (ackedBeforeCrash[i] && w.sync) {
          model.syncedVersion = Math.max(model.syncedVersion, r.version);
        }
      }
      model.writes.sort((a, b) => a.version - b.version);
      fs = crashed;
      const old = e;
      e = await Engine.open("/db", options());
      void old; // Abandoned, as a crashed process would be.
      const v = e.currentVersion;
      assertTrue(
        v >= model.syncedVersion && v <= model.lastVersion,
        `recovered version ${v} within [synced ${model.syncedVersion}, last ${model.lastVersion}]`,
      );
      model.truncate(v);
      model.syncedVersion = v;
      sameMaps(await engineState(e), model.stateAt(v), "state after crash");
      assertEquals(e.appliedIndex, model.appliedIndexAt(v), "applied index after crash");
      compacted = e.compactedVersion;
      // The old engine's unfinished background work must not throw into the test.
      await old.waitForBackground().catch(() => {});
    } else {
      await e.close();
      e = await Engine.open("/db", options());
      assertEquals(e.currentVersion, model.lastVersion, "clean reopen keeps every write");
      model.syncedVersion = model.lastVersion;
      compacted = e.compactedVersion;
    }
  }
  sameMaps(await engineState(e), model.stateAt(model.lastVersion), "final state");
  await e.close();
}

const seedCount = Number(Deno.env.get("CRASH_SEEDS") ?? "200");

Deno.test(`crash model: ${seedCount} seeds of random ops, crashes and reopens vs a model map`, async () => {
  const fixed = Deno.env.get("SEED");
  const first = testSeed();
  const seeds = fixed ? [first] : Array.from({ length: seedCount }, (_, i) => (first + i) >>> 0);
  for (const seed of seeds) {
    try {
      await runSeed(seed, 120);
    } catch (err) {
      console.error(
        `crash model test failed with SEED=${seed} (replay: SEED=${seed} deno test -A tests/storage/crash_model_test.ts)`,
      );
      throw err;
    }
  }
});
