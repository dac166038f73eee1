// The log and its parts: storage, unstable tail, progress, inflights, quorum.
import { assertEquals, assertThrows, assertTrue } from "../common/test_helpers.ts";
import { Inflights } from "./inflights.ts";
import { RaftLog } from "./log.ts";
import { Unstable } from "./log_unstable.ts";
import { Progress } from "./progress.ts";
import { committedIndex, quorumSize, voteResult } from "./quorum.ts";
import { LogCompactedError, LogUnavailableError, MemoryStorage } from "./storage.ts";
import { type Entry, EntryType } from "./types.ts";

const ents = (from: number, terms: number[]): Entry[] =>
  terms.map((term, i) => ({
    index: from + i,
    term,
    type: EntryType.Normal,
    groupId: 1,
    data: new Uint8Array(10),
  }));

Deno.test("MemoryStorage: append truncates a conflicting suffix; compact keeps terms", () => {
  const st = new MemoryStorage({ voters: ["n1"], learners: [] }, 1);
  st.append(ents(1, [1, 1, 2, 2]));
  st.append(ents(3, [3]));
  assertEquals([st.firstIndex(), st.lastIndex(), st.term(3)], [1, 3, 3]);
  st.createSnapshot(2, { voters: ["n1"], learners: [] }, new Uint8Array([9]));
  st.compact(2);
  assertEquals([st.firstIndex(), st.lastIndex(), st.term(2)], [3, 3, 1]);
  assertThrows(() => st.term(1), LogCompactedError);
  assertThrows(() => st.entries(2, 3), LogCompactedError);
  assertThrows(() => st.term(4), LogUnavailableError);
  assertEquals(st.entries(3, 4).map((e) => e.term), [3]);
  st.applySnapshot({
    meta: { index: 10, term: 4, conf: { voters: ["n1"], learners: [] } },
    data: new Uint8Array(),
  });
  assertEquals([st.firstIndex(), st.lastIndex(), st.term(10)], [11, 10, 4]);
});

Deno.test("MemoryStorage: entries respects the byte cap but returns at least one", () => {
  const st = new MemoryStorage();
  st.append(ents(1, [1, 1, 1, 1]));
  assertEquals(st.entries(1, 5, 1).length, 1);
  assertEquals(st.entries(1, 5, 2 * 34).length, 2);
  assertEquals(st.entries(1, 5).length, 4);
});

Deno.test("RaftLog: maybeAppend enforces the log-matching check (§5.3)", () => {
  const st = new MemoryStorage();
  st.append(ents(1, [1, 2, 3]));
  const log = new RaftLog(st);
  assertEquals(log.maybeAppend(3, 2, 3, ents(4, [3])), undefined, "prev term mismatch");
  assertEquals(log.maybeAppend(2, 2, 3, ents(3, [4, 4])), 4, "conflicting 3 is replaced");
  assertEquals([log.lastIndex(), log.term(3), log.committed], [4, 4, 3]);
  assertEquals(log.unstableEntries().map((e) => e.index), [3, 4]);
  assertEquals(log.maybeAppend(1, 1, 4, ents(2, [2])), 2, "an old duplicate changes nothing");
  assertEquals(log.lastIndex(), 4);
  log.stableTo(4, 4);
  assertEquals(log.unstableEntries(), []);
});

Deno.test("RaftLog: findConflictByTerm finds where a lagging log can match", () => {
  const st = new MemoryStorage();
  st.append(ents(1, [1, 1, 2, 2, 2, 5, 5]));
  const log = new RaftLog(st);
  assertEquals(log.findConflictByTerm(7, 4), { index: 5, term: 2 });
  assertEquals(log.findConflictByTerm(7, 5), { index: 7, term: 5 });
  assertEquals(log.findConflictByTerm(4, 1), { index: 2, term: 1 });
  assertEquals(log.findConflictByTerm(100, 0), { index: 0, term: 0 });
});

Deno.test("RaftLog: isUpToDate compares last term first, then length (§5.4.1)", () => {
  const st = new MemoryStorage();
  st.append(ents(1, [1, 2, 2]));
  const log = new RaftLog(st);
  assertTrue(log.isUpToDate(1, 3));
  assertTrue(log.isUpToDate(3, 2));
  assertTrue(!log.isUpToDate(2, 2));
  assertTrue(!log.isUpToDate(9, 1));
});

Deno.test("Progress: probe pauses after one send, replicate pipelines in a window", () => {
  const pr = new Progress(5, false, 2, 0);
  assertEquals(pr.state, "probe");
  pr.sentEntries(6, 2, 20);
  assertTrue(pr.isPaused());
  assertTrue(pr.maybeUpdate(6));
  pr.becomeReplicate();
  assertEquals(pr.next, 7);
  pr.sentEntries(8, 2, 20);
  pr.sentEntries(9, 1, 10);
  assertTrue(pr.isPaused(), "window of 2 is full");
  pr.maybeUpdate(8);
  pr.inflights.freeLE(8);
  assertTrue(!pr.isPaused());
  assertTrue(!pr.maybeDecrTo(7, 0), "a stale rejection is ignored");
  assertTrue(pr.maybeDecrTo(9, 8));
  assertEquals(pr.next, 9);
  pr.becomeSnapshot(100);
  assertTrue(pr.isPaused());
  pr.becomeProbe();
  assertEquals(pr.next, 101);
});

Deno.test("Inflights: bounded by count and bytes, freed in order", () => {
  const f = new Inflights(3, 100);
  f.add(1, 10);
  f.add(2, 80);
  assertTrue(!f.full());
  f.add(5, 20);
  assertTrue(f.full());
  f.freeLE(2);
  assertEquals([f.count, f.bytes], [1, 20]);
  const g = new Inflights(10, 50);
  g.add(1, 60);
  assertTrue(g.full(), "over the byte budget");
});

Deno.test("quorum: majority sizes, committed index, vote tallies", () => {
  assertEquals([1, 2, 3, 4, 5].map(quorumSize), [1, 2, 2, 3, 3]);
  assertEquals(committedIndex([5, 1, 3]), 3);
  assertEquals(committedIndex([5, 1, 3, 4, 2]), 3);
  assertEquals(committedIndex([7]), 7);
  assertEquals(voteResult(3, 2, 0), "won");
  assertEquals(voteResult(3, 1, 2), "lost");
  assertEquals(voteResult(4, 2, 1), "pending");
});

Deno.test("unstable: entries in flight are handed out once; a rewrite of them is handed out again", () => {
  const u = new Unstable(1);
  u.truncateAndAppend(ents(1, [1, 1, 1]));
  assertEquals(u.entriesToPersist().map((e) => e.index), [1, 2, 3]);
  u.acceptInProgress();
  assertTrue(!u.hasEntriesToPersist());
  u.truncateAndAppend(ents(4, [1]));
  assertEquals(u.entriesToPersist().map((e) => e.index), [4]);
  u.acceptInProgress();
  // A new leader rewrites 3 and 4 while their old versions are still being written.
  u.truncateAndAppend(ents(3, [2, 2]));
  assertEquals(u.entriesToPersist().map((e) => [e.index, e.term]), [[3, 2], [4, 2]]);
  u.acceptInProgress();
  u.stableTo(4, 1); // the old write of 1-4 lands: its 4 is not the log's 4 any more
  assertEquals([u.offset, u.entries.length], [1, 4]);
  u.stableTo(2, 1); // entries before the rewrite are
  assertEquals([u.offset, u.offsetInProgress], [3, 5]);
  u.stableTo(4, 2);
  assertEquals([u.offset, u.entries.length, u.hasEntriesToPersist()], [5, 0, false]);
});
