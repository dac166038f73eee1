/**
 * Randomized crash test of the durable Raft log on the crashable in-memory
 * file system: each seed drives one log through appends, conflicting
 * suffixes, hard-state changes (synced or, commit-only as the replica saves
 * them, not), cuts (which
 * start a new segment beside later saves), snapshots from a leader and
 * crashes (some tearing unsynced bytes), at any point of a segment switch.
 * After a crash the reopened log must be exactly the log as it stood after
 * one of the operations since the last one known durable, and must go on
 * working.
 *
 * A failure prints its seed; replay it with `SEED=<n> deno test -A lib/node`.
 * `CRASH_SEEDS=<n>` changes how many seeds run (default 150).
 */

import { SeededRandom, testSeed } from "../common/random.ts";
import { assertTrue } from "../common/test_helpers.ts";
import type { FileHandle, FileSystem } from "../storage/fs.ts";
import { MemFileSystem } from "../storage/mem_fs.ts";
import { type Entry, EntryType } from "../raft/types.ts";
import { RaftLogStore } from "./raft_log_store.ts";

const conf = { voters: ["n1", "n2", "n3"], learners: [] };

/** What a reader of the log sees, as a comparable string. */
function describe(store: RaftLogStore): string {
  const snap = store.snapshot().meta;
  const first = store.firstIndex();
  const last = store.lastIndex();
  const entries = last >= first ? store.entries(first, last + 1) : [];
  const hs = store.initialState().hardState;
  return JSON.stringify({
    snapshot: [snap.index, snap.term],
    hardState: [hs.term, hs.vote, hs.commit],
    entries: entries.map((e) => `${e.index}:${e.term}:${e.data.length}:${e.data[0] ?? -1}`),
  });
}

function entry(index: number, term: number, bytes: number, fill: number): Entry {
  return {
    index,
    term,
    type: EntryType.Normal,
    groupId: 0,
    data: new Uint8Array(bytes).fill(fill),
  };
}

/**
 * The crashable file system, where the log's background work (creating a
 * next segment, deleting replaced ones) is sometimes held back until the
 * test lets it go, so saves, cuts and crashes land in the middle of it.
 */
class ParkingFs implements FileSystem {
  #parked: (() => void)[] = [];
  #holding = true;

  constructor(readonly inner: MemFileSystem, readonly r: SeededRandom) {}

  async #maybePark(): Promise<void> {
    if (this.#holding && this.r.nextInt(2) === 0) {
      await new Promise<void>((go) => this.#parked.push(go));
    }
  }

  /** Lets some held-back operations go on; `all`: every one, and hold nothing from now on. */
  release(all = false): void {
    if (all) this.#holding = false;
    const keep: (() => void)[] = [];
    for (const go of this.#parked) {
      if (all || this.r.nextInt(3) === 0) go();
      else keep.push(go);
    }
    this.#parked = keep;
  }

  async create(path: string): Promise<FileHandle> {
    if (path.endsWith(".tmp")) await this.#maybePark();
    return this.inner.create(path);
  }
  async remove(path: string): Promise<void> {
    if (path.endsWith(".rlog")) await this.#maybePark(); // Replaced segments, not open's cleanup.
    return this.inner.remove(path);
  }
  open(path: string): Promise<FileHandle> {
    return this.inner.open(path);
  }
  readFile(path: string): Promise<Uint8Array> {
    return this.inner.readFile(path);
  }
  rename(from: string, to: string): Promise<void> {
    return this.inner.rename(from, to);
  }
  list(dir: string): Promise<string[]> {
    return this.inner.list(dir);
  }
  mkdir(dir: string): Promise<void> {
    return this.inner.mkdir(dir);
  }
  syncDir(dir: string): Promise<void> {
    return this.inner.syncDir(dir);
  }
  stat(path: string): Promise<{ sizeBytes: number } | undefined> {
    return this.inner.stat(path);
  }
}

async function runSeed(seed: number): Promise<void> {
  const r = new SeededRandom(seed);
  // Odd seeds make durable saves one-step (only the appended bytes become durable, as O_DSYNC).
  let fs = new ParkingFs(new MemFileSystem({ oneStepAppends: seed % 2 === 1 }), r);
  let store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  // The log after each operation since the last one known durable (the first).
  let states = [describe(store)];
  let term = 1;
  let vote = "n1";
  let commit = 0;
  let justCut = false;
  const ops = 60 + r.nextInt(60);
  for (let op = 0; op < ops; op++) {
    const last = store.lastIndex();
    const snapIndex = store.snapshot().meta.index;
    // Right after a cut, often rewrite a suffix: the next segment is being written then.
    const pick = justCut && r.nextInt(2) === 0 ? 40 : r.nextInt(100);
    justCut = false;
    let durable = false;
    fs.release();
    if (pick < 35) {
      // New entries; now and then a large one (the restated tail grows).
      const n = 1 + r.nextInt(5);
      const big = r.nextInt(20) === 0;
      const entries = Array.from(
        { length: n },
        (_, i) => entry(last + 1 + i, term, big ? 300_000 : 1 + r.nextInt(40), r.nextInt(256)),
      );
      // Always synced, as the replica saves entries: an unsynced save of several records may
      // come back as any prefix of them (records, not saves, are what a torn write keeps).
      if (r.nextInt(3) === 0) commit = Math.min(last + n, commit + r.nextInt(3));
      await store.save({ entries, hardState: { term, vote, commit } }, true);
      durable = true;
    } else if (pick < 55 && last > commit && last > snapIndex) {
      // A new leader overwrites an uncommitted suffix.
      term++;
      vote = "";
      const from = Math.max(commit, snapIndex) + 1 + r.nextInt(last - Math.max(commit, snapIndex));
      const entries = Array.from(
        { length: 1 + r.nextInt(3) },
        (_, i) => entry(from + i, term, 8, 7),
      );
      await store.save({ entries, hardState: { term, vote, commit } }, true);
      durable = true;
    } else if (pick < 65) {
      // The commit index moves (not synced, written at once or lazily, as the replica does)
      // or the term does (synced).
      if (r.nextInt(2) === 0 && commit < last) {
        commit += 1 + r.nextInt(last - commit);
        await store.save(
          { entries: [], hardState: { term, vote, commit } },
          false,
          r.nextInt(2) === 0,
        );
      } else {
        term++;
        vote = r.nextInt(2) === 0 ? "n2" : "";
        await store.save({ entries: [], hardState: { term, vote, commit } }, true);
        durable = true;
      }
    } else if (pick < 75 && commit > snapIndex) {
      await store.compact(snapIndex + 1 + r.nextInt(commit - snapIndex), conf, new Uint8Array());
      durable = true;
      justCut = true;
    } else if (pick < 80) {
      // A snapshot from the leader beyond our log replaces it.
      term++;
      const index = last + 1 + r.nextInt(5);
      commit = index;
      const snapshot = { meta: { index, term, conf }, data: new Uint8Array([1]) };
      await store.save({ snapshot, entries: [], hardState: { term, vote: "", commit } }, true);
      vote = "";
      durable = true;
    } else if (pick < 88) {
      await new Promise((resolve) => setTimeout(resolve, r.nextInt(2)));
      continue; // Background work (a next segment) runs; the log's contents do not change.
    } else {
      // Crash now, whatever is in flight, and reopen what the disk holds.
      // The abandoned log's held-back work stays held: it never touches the clone.
      fs = new ParkingFs(fs.inner.crashClone(r.nextInt(2) === 0 ? { tearRandom: r } : {}), r);
      store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
      const got = describe(store);
      assertTrue(
        states.includes(got),
        `seed ${seed} op ${op}: recovered\n${got}\nnot one of\n${states.join("\n")}`,
      );
      const hs = store.initialState().hardState;
      [term, vote, commit] = [hs.term, hs.vote, hs.commit];
      states = [got];
      continue;
    }
    const now = describe(store);
    states = durable ? [now] : [...states, now];
  }
  fs.release(true);
  await store.close();
}

Deno.test("raft log: crashes anywhere, segment switches included, recover a state it passed through", async () => {
  const base = testSeed();
  const count = Number(Deno.env.get("CRASH_SEEDS") ?? 150);
  for (let i = 0; i < count; i++) {
    const seed = (base + i) >>> 0;
    let watchdog: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        runSeed(seed),
        new Promise((_, reject) => {
          watchdog = setTimeout(() => reject(new Error(`seed ${seed} HUNG`)), 10_000);
        }),
      ]);
      clearTimeout(watchdog);
    } catch (e) {
      clearTimeout(watchdog);
      throw new Error(`seed ${seed} failed (replay: SEED=${seed} CRASH_SEEDS=1): ${e}`);
    }
  }
});
