import { assertEquals, assertRejects, assertTrue } from "../common/test_helpers.ts";
import { CorruptionError, DiskFullError } from "../common/errors.ts";
import { MemFileSystem } from "../storage/mem_fs.ts";
import { type Entry, EntryType } from "../raft/types.ts";
import { RaftLogStore } from "./raft_log_store.ts";
import { frameRecord, scanRecords } from "../storage/record_log.ts";
import { concatBytes } from "../common/bytes.ts";

const conf = { voters: ["n1", "n2", "n3"], learners: [] };

function entries(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) {
    out.push({
      index: i,
      term,
      type: EntryType.Normal,
      groupId: 0,
      data: new TextEncoder().encode(`e${i}t${term}`),
    });
  }
  return out;
}

function text(e: Entry): string {
  return `${e.index}:${e.term}:${new TextDecoder().decode(e.data)}`;
}

/** A log holding entries 1-3 (term 1) and a hard state, closed; returns its segment's path. */
async function logOfThree(fs: MemFileSystem): Promise<string> {
  const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  await store.save(
    { entries: entries(1, 3, 1), hardState: { term: 1, vote: "n1", commit: 3 } },
    true,
  );
  await store.close();
  return fs.paths().find((p) => p.endsWith(".rlog"))!;
}

Deno.test("synced entries and hard state survive a crash; one save is one write and one fsync", async () => {
  const fs = new MemFileSystem();
  const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  await store.save(
    { entries: entries(1, 100, 1), hardState: { term: 1, vote: "n1", commit: 90 } },
    true,
  );
  assertEquals([store.writeCount, store.syncCount], [1, 1]);
  await store.save({ entries: entries(101, 105, 1) }, false); // not synced: may be lost
  fs.crash();
  const back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  const r = back.recovered();
  assertEquals(r.hardState, { term: 1, vote: "n1", commit: 90 });
  assertEquals([r.firstIndex, r.lastIndex], [1, 100]);
  assertEquals(back.entries(1, 101).map(text), entries(1, 100, 1).map(text));
  assertEquals(back.initialState().confState, conf);
});

Deno.test("a lazy commit-only hard state waits for the next write, cut, close or an explicit write", async () => {
  const fs = new MemFileSystem();
  const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  await store.save(
    { entries: entries(1, 10, 1), hardState: { term: 1, vote: "n1", commit: 2 } },
    true,
  );
  const lazily = (s: RaftLogStore, commit: number, term = 1, vote = "n1") =>
    s.save({ entries: [], hardState: { term, vote, commit } }, false, true);
  await lazily(store, 5);
  assertEquals([store.writeCount, store.hardStateBehind], [1, true]);
  assertEquals(store.initialState().hardState.commit, 5); // the mirror has it at once
  fs.crash();
  let back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals(back.recovered().hardState, { term: 1, vote: "n1", commit: 2 });
  // It rides along with the next entries...
  await lazily(back, 7);
  await back.save({ entries: entries(11, 12, 1) }, true);
  assertEquals([back.writeCount, back.hardStateBehind], [1, false]);
  fs.crash();
  back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals(back.recovered().hardState, { term: 1, vote: "n1", commit: 7 });
  // ...a cut, the close, or an explicit write.
  await lazily(back, 9);
  await back.compact(4, conf, new Uint8Array());
  fs.crash();
  back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals(back.recovered().hardState.commit, 9);
  await lazily(back, 10);
  await back.close();
  back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals(back.recovered().hardState.commit, 10);
  await lazily(back, 11);
  await back.writeDeferredHardState(); // written, not synced
  assertEquals([back.writeCount, back.hardStateBehind], [1, false]);
  const reader = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals(reader.recovered().hardState.commit, 11);
  // Saved eagerly, or with a new term or vote, it is written at once.
  await back.save({ entries: [], hardState: { term: 1, vote: "n1", commit: 12 } }, false);
  await lazily(back, 12, 2, "");
  assertEquals([back.writeCount, back.hardStateBehind], [3, false]);
});

Deno.test("a truncated conflicting suffix stays truncated after restart", async () => {
  const fs = new MemFileSystem();
  const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  await store.save({ entries: entries(1, 10, 1) }, true);
  await store.save(
    { entries: entries(6, 8, 2), hardState: { term: 2, vote: "", commit: 5 } },
    true,
  );
  assertEquals(store.lastIndex(), 8);
  await store.close();
  const back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals(back.entries(1, 9).map(text), [...entries(1, 5, 1), ...entries(6, 8, 2)].map(text));
  assertEquals(back.lastIndex(), 8);
});

Deno.test("compaction drops covered segments; restart sees the snapshot point and the rest", async () => {
  const fs = new MemFileSystem();
  const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  await store.save(
    { entries: entries(1, 50, 1), hardState: { term: 1, vote: "n1", commit: 50 } },
    true,
  );
  const snap = await store.compact(40, conf, new Uint8Array([7]));
  assertEquals(snap.meta, { index: 40, term: 1, conf });
  await store.save({ entries: entries(51, 60, 1) }, true);
  await store.settle();
  assertEquals(store.segmentCount, 1);
  assertEquals(fs.paths().filter((p) => p.endsWith(".rlog")).length, 1);
  fs.crash();
  const back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals([back.firstIndex(), back.lastIndex()], [41, 60]);
  assertEquals(back.snapshot().meta.index, 40);
  assertEquals(back.snapshot().data, new Uint8Array([7]));
  assertEquals(back.entries(41, 61).map(text), entries(41, 60, 1).map(text));
  assertEquals(back.recovered().hardState.commit, 50);
});

Deno.test("a snapshot received from the leader replaces the whole log, durably", async () => {
  const fs = new MemFileSystem();
  const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  await store.save({ entries: entries(1, 5, 1) }, true);
  const snapshot = { meta: { index: 500, term: 7, conf }, data: new Uint8Array([1, 2]) };
  await store.save({
    snapshot,
    hardState: { term: 7, vote: "", commit: 500 },
    entries: entries(501, 502, 7),
  }, true);
  fs.crash();
  const back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals([back.firstIndex(), back.lastIndex()], [501, 502]);
  assertEquals(back.term(500), 7);
});

Deno.test("a torn tail at every byte offset of the last record loses only that record", async () => {
  const fs = new MemFileSystem();
  const path = await logOfThree(fs);
  const good = scanRecords(fs.fileBytes(path), path);
  const goodEnd = good.validEndBytes;
  const store2 = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  await store2.save({ entries: entries(4, 4, 1) }, true);
  await store2.close();
  const full = fs.fileBytes(path);
  const fullEnd = scanRecords(full, path).validEndBytes;
  assertTrue(full.length > fullEnd, "the segment has preallocated space after its records");
  // Each cut both as a shorter file and with the rest of the preallocated space zero.
  for (let i = 0; i < 2 * (fullEnd - goodEnd); i++) {
    const cut = goodEnd + (i >> 1);
    const bytes = new Uint8Array(i % 2 === 0 ? cut : full.length);
    bytes.set(full.subarray(0, cut));
    fs.setFileBytes(path, bytes);
    const back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
    assertEquals(back.lastIndex(), 3, `cut at ${cut}`);
    const after = scanRecords(fs.fileBytes(path), path);
    assertEquals(
      [after.records.length, after.tornTail],
      [good.records.length, false],
      "the torn tail is cut off",
    );
    await back.close();
  }
});

Deno.test("a flipped bit before valid records is corruption with file and offset", async () => {
  const fs = new MemFileSystem();
  const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  await store.save({ entries: entries(1, 3, 1) }, true);
  await store.save({ entries: entries(4, 6, 1) }, true);
  await store.close();
  const path = fs.paths().find((p) => p.endsWith(".rlog"))!;
  const bytes = fs.fileBytes(path).slice();
  bytes[12] ^= 0x10;
  fs.setFileBytes(path, bytes);
  const e = await assertRejects(
    () => RaftLogStore.open(fs, "/d/raft", 0, conf),
    CorruptionError,
    path,
  );
  assertTrue(e.offset === 0, `offset ${e.offset}`);
});

Deno.test("a live log larger than a segment is rewritten once per segment of growth, not on every save", async () => {
  const fs = new MemFileSystem();
  const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  const mib = new Uint8Array(1024 * 1024);
  // 70 MiB of uncompacted entries (the fuzz suite's maximum-size puts).
  for (let i = 1; i <= 70; i++) {
    await store.save(
      { entries: [{ index: i, term: 1, type: EntryType.Normal, groupId: 0, data: mib }] },
      true,
    );
  }
  const segments = async () => (await fs.list("/d/raft")).filter((n) => n.includes(".rlog"));
  await store.settle();
  assertEquals(await segments(), ["000002.rlog"]); // one rotation, at 64 MiB of growth
  // Hard-state changes (elections) append a few bytes each and rotate nothing.
  for (let term = 2; term < 50; term++) {
    await store.save({ entries: [], hardState: { term, vote: "", commit: 70 } }, true);
  }
  await store.settle();
  assertEquals(await segments(), ["000002.rlog"]);
  await store.close();
  const back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals([back.firstIndex(), back.lastIndex(), back.recovered().hardState.term], [1, 70, 49]);
});

Deno.test("a segment written before sync markers is read and continued as it is", async () => {
  // Logs from before preallocation have no markers: such a segment keeps the
  // append-only rules (no zeros written ahead, no markers mid-file) until the
  // next segment, which starts with a marker.
  const fs = new MemFileSystem();
  const path = await logOfThree(fs);
  const plain = scanRecords(fs.fileBytes(path), path).records.map((r) => frameRecord(r.payload));
  fs.setFileBytes(path, concatBytes(...plain)); // The same records, framed as before markers.
  const old = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals([old.firstIndex(), old.lastIndex()], [1, 3]);
  await old.save({ entries: entries(4, 5, 1) }, true);
  await old.close();
  const bytes = fs.fileBytes(path);
  const scan = scanRecords(bytes, path);
  assertEquals([scan.markers, scan.zeroTail, scan.validEndBytes], [false, false, bytes.length]);
  const back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals(back.entries(1, 6).map(text), [...entries(1, 5, 1)].map(text));
  await back.close();
});

/** A MemFileSystem that holds back the creation of a next segment until `release()`. */
class HeldNextSegment extends MemFileSystem {
  #held: Promise<void> | undefined;
  release: () => void = () => {};

  hold(): void {
    this.#held = new Promise((r) => (this.release = r));
  }

  override async create(path: string) {
    if (path.endsWith(".rlog.tmp") && this.#held) await this.#held;
    return super.create(path);
  }
}

Deno.test("saves go on while the next segment is written; what changed meanwhile moves over", async () => {
  const fs = new HeldNextSegment();
  const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  await store.save(
    { entries: entries(1, 50, 1), hardState: { term: 1, vote: "", commit: 50 } },
    true,
  );
  fs.hold();
  await store.compact(30, conf, new Uint8Array()); // The next segment's head: 31-50 of term 1.
  // Meanwhile: new entries, a conflicting suffix below what the head restates, a second cut.
  await store.save({ entries: entries(51, 55, 1) }, true);
  await store.save(
    { entries: entries(45, 47, 2), hardState: { term: 2, vote: "", commit: 44 } },
    true,
  );
  await store.compact(40, conf, new Uint8Array());
  assertEquals(store.segmentCount, 1); // Still the first segment: the next one is held.
  fs.release();
  await store.settle();
  assertEquals(fs.paths().filter((p) => p.includes(".rlog")), ["/d/raft/000002.rlog"]);
  await store.save({ entries: entries(48, 48, 2) }, true);
  fs.crash();
  const back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals([back.snapshot().meta.index, back.firstIndex(), back.lastIndex()], [40, 41, 48]);
  assertEquals(
    back.entries(41, 49).map(text),
    [...entries(41, 44, 1), ...entries(45, 48, 2)].map(text),
  );
  assertEquals(back.recovered().hardState, { term: 2, vote: "", commit: 44 });
});

Deno.test("a cut past what the next segment's head restates resets the log there", async () => {
  const fs = new HeldNextSegment();
  const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  await store.save({ entries: entries(1, 20, 1) }, true);
  fs.hold();
  await store.compact(10, conf, new Uint8Array()); // Head: 11-20.
  await store.save({ entries: entries(21, 40, 1) }, true);
  await store.compact(30, conf, new Uint8Array()); // Past 20.
  fs.release();
  await store.settle();
  fs.crash();
  const back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals([back.snapshot().meta.index, back.firstIndex(), back.lastIndex()], [30, 31, 40]);
  assertEquals(back.term(30), 1);
  assertEquals(back.entries(31, 41).map(text), entries(31, 40, 1).map(text));
});

Deno.test("a snapshot from the leader while the next segment is written makes it start over", async () => {
  const fs = new HeldNextSegment();
  const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  await store.save({ entries: entries(1, 20, 1) }, true);
  fs.hold();
  await store.compact(10, conf, new Uint8Array()); // Head: 11-20, outdated by the snapshot:
  const snapshot = { meta: { index: 15, term: 1, conf }, data: new Uint8Array([9]) };
  await store.save({ snapshot, entries: [] }, true); // The log is now empty after 15.
  fs.release();
  await store.settle();
  assertEquals(fs.paths().filter((p) => p.includes(".rlog")), ["/d/raft/000002.rlog"]);
  fs.crash();
  const back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals([back.snapshot().meta.index, back.firstIndex(), back.lastIndex()], [15, 16, 15]);
  assertEquals(back.snapshot().data, new Uint8Array([9]));
});

Deno.test("a crash while the next segment is written loses nothing; the partial one is removed", async () => {
  for (const unsynced of [false, true]) {
    const fs = new MemFileSystem();
    const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
    await store.save({ entries: entries(1, 30, 1) }, true);
    await store.compact(10, conf, new Uint8Array());
    // Crash before the next segment is synced (or, the second time, after it was
    // written but never switched to): the first segment alone is the log.
    if (unsynced) await store.settle();
    await store.save({ entries: entries(31, 32, 1) }, true);
    fs.crash();
    const back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
    assertEquals([back.firstIndex(), back.lastIndex()], [11, 32]);
    assertEquals(back.entries(11, 33).map(text), entries(11, 32, 1).map(text));
    assertTrue(!fs.paths().some((p) => p.endsWith(".tmp")), fs.paths().join());
    await back.close();
  }
});

Deno.test("a segment followed by another is read up to its last record, sealed or not", async () => {
  const fs = new MemFileSystem();
  const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  await store.save({ entries: entries(1, 30, 1) }, true);
  fs.injectError({ op: "remove", path: "000001.rlog", code: "EIO", times: Infinity });
  await store.compact(10, conf, new Uint8Array());
  await store.settle(); // Switched; the old segment could not be deleted.
  await store.save({ entries: entries(31, 35, 1) }, true);
  const first = fs.fileBytes("/d/raft/000001.rlog");
  const scan = scanRecords(first, "000001.rlog");
  assertTrue(scan.zeroTail, "the old segment still has its preallocated zeros");
  fs.crash();
  fs.clearErrors();
  const back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals([back.firstIndex(), back.lastIndex()], [11, 35]);
  assertEquals(back.entries(11, 36).map(text), entries(11, 35, 1).map(text));
  // Its records may even end torn: the next segment restates them.
  await back.close();
  fs.setFileBytes("/d/raft/000001.rlog", first.subarray(0, scan.validEndBytes - 3));
  const again = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals([again.firstIndex(), again.lastIndex()], [11, 35]);
  await again.settle();
});

Deno.test("a next segment that cannot be created fails the save that finds it", async () => {
  const fs = new MemFileSystem();
  const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  await store.save({ entries: entries(1, 20, 1) }, true);
  fs.injectError({ op: "create", path: ".rlog.tmp", code: "ENOSPC" });
  await store.compact(10, conf, new Uint8Array());
  await new Promise((r) => setTimeout(r, 0)); // The preparation fails meanwhile.
  await assertRejects(() => store.save({ entries: entries(21, 21, 1) }, true), DiskFullError);
  // What was saved stays: the first segment is still the log.
  fs.crash();
  const back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals([back.snapshot().meta.index, back.firstIndex(), back.lastIndex()], [10, 11, 21]);
  assertTrue(!fs.paths().some((p) => p.endsWith(".tmp")), fs.paths().join());
});

Deno.test("a prepared segment takes over without waiting for a save", async () => {
  const fs = new MemFileSystem();
  const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  await store.save({ entries: entries(1, 20, 1) }, true);
  await store.compact(10, conf, new Uint8Array());
  // Nothing else is saved: the node is idle.
  const segments = () => fs.paths().filter((p) => p.includes(".rlog"));
  for (let i = 0; i < 100 && segments().join() !== "/d/raft/000002.rlog"; i++) {
    await new Promise((r) => setTimeout(r, 1));
  }
  assertEquals(segments(), ["/d/raft/000002.rlog"]);
  fs.crash();
  const back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals([back.snapshot().meta.index, back.firstIndex(), back.lastIndex()], [10, 11, 20]);
});

Deno.test("closing while a next segment is written drops it, without waiting for a save", async () => {
  const fs = new HeldNextSegment();
  const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  await store.save({ entries: entries(1, 20, 1) }, true);
  fs.hold();
  await store.compact(10, conf, new Uint8Array());
  const closed = store.close();
  fs.release();
  await closed;
  assertEquals(fs.paths().filter((p) => p.includes(".rlog")), ["/d/raft/000001.rlog"]);
  const back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals([back.snapshot().meta.index, back.firstIndex(), back.lastIndex()], [10, 11, 20]);
  await back.close();
});

Deno.test("a suffix rewritten and then cut while the next segment is written leaves no stale entry", async () => {
  // Found by the crash test (seed 4018193): the head restated 5-7, then 6 was rewritten (7 gone)
  // and the log cut at 6; a switch that carried over only what followed the rewrite left the
  // head's old 7 after the cut on replay.
  const fs = new HeldNextSegment();
  const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  await store.save({ entries: [...entries(1, 6, 3), ...entries(7, 7, 4)] }, true);
  // The old segment stays, as when a crash comes before its deletion: it replays first.
  fs.injectError({ op: "remove", path: "000001.rlog", code: "EIO", times: Infinity });
  fs.hold();
  await store.compact(4, conf, new Uint8Array()); // Head: 5-7.
  await store.save(
    { entries: entries(6, 6, 5), hardState: { term: 5, vote: "", commit: 6 } },
    true,
  );
  await store.compact(6, conf, new Uint8Array());
  fs.release();
  await store.settle();
  await store.save({ entries: [], hardState: { term: 6, vote: "n2", commit: 6 } }, true);
  fs.crash();
  fs.clearErrors();
  const back = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals([back.snapshot().meta.index, back.firstIndex(), back.lastIndex()], [6, 7, 6]);
  assertEquals(back.term(6), 5);
});

Deno.test("a tail a killed process left unsynced is made durable at open, before one-step appends vouch for it", async () => {
  // One-step durable appends make only their own bytes durable (O_DSYNC on a real disk).
  const fs = new MemFileSystem({ oneStepAppends: true });
  // No zero-filled space past the records: reopening then has no tail to cut, which would
  // sync the file on its own.
  fs.injectError({ op: "preallocate", code: "EIO", times: Infinity });
  const store = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  await store.save(
    { entries: entries(1, 3, 1), hardState: { term: 1, vote: "n1", commit: 3 } },
    true,
  );
  await store.save({ entries: entries(4, 4, 1) }, false); // written, not synced
  // The process is killed (the page cache keeps entry 4) and the node starts again.
  const again = await RaftLogStore.open(fs, "/d/raft", 0, conf);
  assertEquals(again.recovered().lastIndex, 4);
  await again.save(
    { entries: entries(5, 5, 1), hardState: { term: 1, vote: "n1", commit: 5 } },
    true,
  );
  // Then the machine loses power: entry 5 was acknowledged, and nothing before it may be missing.
  const after = fs.crashClone();
  const back = await RaftLogStore.open(after, "/d/raft", 0, conf);
  assertEquals(back.recovered().lastIndex, 5);
  assertEquals(back.entries(1, 6).map(text), entries(1, 5, 1).map(text));
});

Deno.test("segments are replayed in numeric order past 999999 (an old one left behind by a crash)", async () => {
  const fs = new MemFileSystem();
  const first = await RaftLogStore.open(fs, "/r", 0, conf);
  await first.close();
  await fs.rename("/r/000001.rlog", "/r/999999.rlog"); // a node that has cut its log many times
  await fs.syncDir("/r");
  const s = await RaftLogStore.open(fs, "/r", 0, conf);
  await s.save(
    { entries: entries(1, 10, 1), hardState: { term: 1, vote: "n1", commit: 10 } },
    true,
  );
  // The cut's removal of the old segment fails (as a crash right after the switch leaves it).
  fs.injectError({ op: "remove", path: ".rlog", code: "EIO", times: Infinity });
  await s.compact(5, conf, new Uint8Array());
  await s.settle().catch(() => {});
  await s.save(
    { entries: entries(11, 20, 1), hardState: { term: 1, vote: "n1", commit: 20 } },
    true,
  );
  assertTrue(fs.paths().includes("/r/1000000.rlog"));
  const reopened = await RaftLogStore.open(fs.crashClone(), "/r", 0, conf);
  assertEquals(reopened.lastIndex(), 20);
  assertEquals(reopened.entries(11, 21).map(text), entries(11, 20, 1).map(text));
  await reopened.close();
});

Deno.test("raft log: a commit index saved lazily past the log is never written past it (a compaction writes it first)", async () => {
  const fs = new MemFileSystem();
  const conf = { voters: ["n1", "n2", "n3"], learners: [] };
  const entry = (index: number) => ({
    index,
    term: 1,
    type: EntryType.Normal,
    groupId: 0,
    data: new Uint8Array([index]),
  });
  const store = await RaftLogStore.open(fs, "/raft", 0, conf);
  await store.save(
    { entries: [entry(1), entry(2)], hardState: { term: 1, vote: "n1", commit: 2 } },
    true,
  );
  // A write-behind leader: entries 3..4 in flight, a lazily saved commit 6 (its followers hold
  // 5..6), then a log compaction queued before the write of 5..6.
  const inFlight = store.save({ entries: [entry(3), entry(4)] }, true, true);
  const lazy = store.save(
    { hardState: { term: 1, vote: "n1", commit: 6 }, entries: [] },
    false,
    true,
  );
  const cut = store.compact(2, conf, new Uint8Array());
  await Promise.all([inFlight, lazy, cut]);
  const reopened = await RaftLogStore.open(fs.crashClone(), "/raft", 0, conf);
  const recovered = reopened.recovered();
  assertEquals([recovered.lastIndex, recovered.hardState.commit], [4, 4]);
});
