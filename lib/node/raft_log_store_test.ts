import { assertEquals, assertRejects, assertTrue } from "../common/test_helpers.ts";
import { CorruptionError } from "../common/errors.ts";
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
  const segments = async () => (await fs.list("/d/raft")).filter((n) => n.endsWith(".rlog"));
  assertEquals(await segments(), ["000002.rlog"]); // one rotation, at 64 MiB of growth
  const grown = store.bytesSinceRotation;
  assertTrue(grown > 5 * 1024 * 1024 && grown < 7 * 1024 * 1024, `grew ${grown} B since`);
  // Hard-state changes (elections) append a few bytes each and rotate nothing.
  for (let term = 2; term < 50; term++) {
    await store.save({ entries: [], hardState: { term, vote: "", commit: 70 } }, true);
  }
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
