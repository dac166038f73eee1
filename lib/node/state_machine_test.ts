import { assertEquals } from "../common/test_helpers.ts";
import { utf8 } from "../common/bytes.ts";
import { Engine, readNeedsIo } from "../storage/engine.ts";
import { MemFileSystem } from "../storage/mem_fs.ts";
import {
  type BatchableCommand,
  CommandOp,
  decodeCommand,
  encodeCommand,
  type TxnWrite,
} from "./command.ts";
import { type ApplyEntry, StateMachine, systemKey } from "./state_machine.ts";
import { requestIdRetentionMs } from "../common/limits.ts";
import { plainPut } from "./testing.ts";
import { encodeSnapshotDescriptor, snapshotRevisionKey } from "./snapshot.ts";
import { WriteBatch } from "../storage/write_batch.ts";

function put(key: string, value: string, requestId: string): Uint8Array {
  return encodeCommand(plainPut(key, value, requestId));
}

async function applyIn(groups: number[][]): Promise<{ revision: number; versions: number[] }> {
  const engine = await Engine.open("/sm", { fs: new MemFileSystem() });
  const sm = new StateMachine(engine);
  // A write, its retry (same request id) and another write, as a retried client leaves them.
  const data = [put("a", "1", "req-1"), put("a", "1", "req-1"), put("b", "2", "req-2")];
  const versions: number[] = [];
  for (const g of groups) {
    const entries: ApplyEntry[] = g.map((i) => ({ index: i + 1, data: data[i] }));
    const results = await sm.apply(entries);
    for (const i of g) versions.push(results.get(i + 1)!.revision);
  }
  const revision = sm.revision;
  await engine.close();
  return { revision, versions };
}

Deno.test("a retried request id applies once however the entries group into apply batches", async () => {
  const together = await applyIn([[0, 1, 2]]);
  const apart = await applyIn([[0], [1], [2]]);
  const split = await applyIn([[0, 1], [2]]);
  assertEquals(together, { revision: 2, versions: [1, 1, 2] });
  assertEquals(apart, together);
  assertEquals(split, together);
});

Deno.test("ids past the retention window are forgotten at history compaction, newer ones kept", async () => {
  await using engine = await Engine.open("/sm", { fs: new MemFileSystem() });
  const sm = new StateMachine(engine);
  const at = (timestampMs: number, key: string, requestId: string) =>
    encodeCommand({
      op: CommandOp.Put,
      timestampMs,
      requestId,
      key: utf8(key),
      value: utf8("v"),
      expiresAtMs: 0,
      ifVersion: undefined,
    });
  const t0 = 1_000_000;
  const late = t0 + requestIdRetentionMs / 2;
  const compactAt = t0 + requestIdRetentionMs + 2; // both old ids are past the window
  await sm.apply([
    { index: 1, data: at(t0, "a", "old-1") },
    { index: 2, data: at(t0 + 1, "b", "old-2") },
    { index: 3, data: at(late, "c", "new-1") },
  ]);
  const compact = encodeCommand({
    op: CommandOp.CompactHistory,
    timestampMs: compactAt,
    revision: 1,
  });
  await sm.apply([{ index: 4, data: compact }]);
  const remembered: string[] = [];
  for await (const kv of engine.scan({ prefix: systemKey("r", "") })) {
    remembered.push(StateMachine.requestIdOf(kv.key)!);
  }
  assertEquals(remembered, ["new-1"]);
  let timeIndex = 0;
  for await (const _ of engine.scan({ prefix: systemKey("t", "") })) timeIndex++;
  assertEquals(timeIndex, 1);
  // A retry of a forgotten id applies again; a retry of a remembered one does not.
  const results = await sm.apply([
    { index: 5, data: at(compactAt, "c", "new-1") },
    { index: 6, data: at(compactAt, "a", "old-1") },
  ]);
  assertEquals(results.get(5)!.deduplicated, true);
  assertEquals(results.get(6)!.deduplicated, undefined);
});

Deno.test("a batch of writes with their own ids keeps one time-index record, and forgets every id", async () => {
  await using engine = await Engine.open("/sm", { fs: new MemFileSystem() });
  const sm = new StateMachine(engine);
  const t0 = 1_000_000;
  const writes = ["w-1", "w-2", "w-3"].map((id, i) => ({
    ...decodeCommand(put(`k${i}`, "v", id)) as BatchableCommand,
  }));
  const batch = (timestampMs: number) =>
    encodeCommand({ op: CommandOp.Batch, timestampMs, requestId: "", commands: writes });
  await sm.apply([{ index: 1, data: batch(t0) }]);
  const count = async (kind: "r" | "t") => {
    let n = 0;
    for await (const _ of engine.scan({ prefix: systemKey(kind, "") })) n++;
    return n;
  };
  assertEquals([await count("r"), await count("t")], [3, 1]);
  // Every write of the batch is remembered: a retry of the whole batch changes nothing.
  const retry = await sm.apply([{ index: 2, data: batch(t0 + 5) }]);
  assertEquals(retry.get(2)!.results!.map((r) => r.deduplicated), [true, true, true]);
  assertEquals(sm.revision, 3);
  const compact = encodeCommand({
    op: CommandOp.CompactHistory,
    timestampMs: t0 + requestIdRetentionMs + 10,
    revision: 1,
  });
  await sm.apply([{ index: 3, data: compact }]);
  assertEquals([await count("r"), await count("t")], [0, 0]);
});

Deno.test("a batch applies each write with its own revision and result, and a retried batch once", async () => {
  await using engine = await Engine.open("/sm", { fs: new MemFileSystem() });
  const sm = new StateMachine(engine);
  await sm.apply([{ index: 1, data: put("k", "0", "") }]);
  const batch = encodeCommand({
    op: CommandOp.Batch,
    timestampMs: 1_000,
    requestId: "batch-1",
    commands: [
      { ...decodeCommand(put("a", "1", "")) as BatchableCommand },
      {
        op: CommandOp.Delete,
        timestampMs: 0,
        requestId: "",
        key: utf8("missing"),
        ifVersion: undefined,
      },
      { op: CommandOp.Delete, timestampMs: 0, requestId: "", key: utf8("k"), ifVersion: undefined },
    ],
  });
  const first = (await sm.apply([{ index: 2, data: batch }])).get(2)!;
  assertEquals(first.results!.map((r) => [r.revision, r.changed]), [[2, true], [2, false], [
    3,
    true,
  ]]);
  const retry = (await sm.apply([{ index: 3, data: batch }])).get(3)!;
  assertEquals(retry.results!.map((r) => [r.changed, r.deduplicated]), [
    [true, true],
    [false, true],
    [true, true],
  ]);
  assertEquals(sm.revision, 3, "the retry wrote nothing");
  assertEquals((await engine.get(utf8("a")))?.version, 2);
});

Deno.test("a conditional write in a batch fails alone; its neighbours apply", async () => {
  await using engine = await Engine.open("/sm", { fs: new MemFileSystem() });
  const sm = new StateMachine(engine);
  const cas = { ...decodeCommand(put("c", "1", "cas-1")), ifVersion: 5 } as BatchableCommand;
  const batch = encodeCommand({
    op: CommandOp.Batch,
    timestampMs: 1_000,
    requestId: "",
    commands: [cas, decodeCommand(put("d", "1", "put-1")) as BatchableCommand],
  });
  const r = (await sm.apply([{ index: 1, data: batch }])).get(1)!;
  assertEquals(r.results![0].error?.name, "ConflictError");
  assertEquals(r.results![0].revision, 1, "its id's record takes a revision of its own");
  assertEquals(r.results![1].revision, 2);
  // The second write's own id dedupes it when a client retries it alone.
  const again = (await sm.apply([{ index: 2, data: put("d", "1", "put-1") }])).get(2)!;
  assertEquals(again.deduplicated, true);
});

Deno.test("a transaction with conditions applies all of its writes or none", async () => {
  await using engine = await Engine.open("/sm", { fs: new MemFileSystem() });
  const sm = new StateMachine(engine);
  const txn = (index: number, writes: TxnWrite[]) =>
    sm.apply([{
      index,
      data: encodeCommand({ op: CommandOp.Txn, timestampMs: 1_000, requestId: "", writes }),
    }]).then((r) => r.get(index)!);
  const value = async (key: string) => {
    const kv = await engine.get(utf8(key));
    return kv === undefined ? undefined : new TextDecoder().decode(kv.value);
  };
  const a = (await sm.apply([{ index: 1, data: put("a", "1", "") }])).get(1)!.revision;
  // A rename of a, as RESP's RENAME proposes it: a must still be at the version read.
  const moved = await txn(2, [
    { key: utf8("a"), value: undefined, expiresAtMs: 0, ifVersion: a },
    { key: utf8("b"), value: utf8("1"), expiresAtMs: 0 },
  ]);
  assertEquals([moved.error, await value("a"), await value("b")], [undefined, undefined, "1"]);
  // One failed condition (c must be absent, but exists) leaves every key as it was.
  await sm.apply([{ index: 3, data: put("c", "x", "") }]);
  const revision = sm.revision;
  const refused = await txn(4, [
    { key: utf8("d"), value: utf8("new"), expiresAtMs: 0, ifVersion: 0 },
    { key: utf8("c"), value: utf8("new"), expiresAtMs: 0, ifVersion: 0 },
  ]);
  assertEquals(refused.error?.name, "ConflictError");
  assertEquals([await value("c"), await value("d"), sm.revision], ["x", undefined, revision]);
  // A check-only write is a condition on a key the transaction only read: c is left as it is.
  const c = (await engine.get(utf8("c")))!.version;
  const checked = await txn(5, [
    { key: utf8("c"), value: undefined, expiresAtMs: 0, ifVersion: c, checkOnly: true },
    { key: utf8("e"), value: utf8("from c"), expiresAtMs: 0 },
  ]);
  assertEquals([checked.error, await value("c"), await value("e")], [undefined, "x", "from c"]);
  const stale = await txn(6, [
    { key: utf8("c"), value: undefined, expiresAtMs: 0, ifVersion: c - 1, checkOnly: true },
    { key: utf8("e"), value: utf8("again"), expiresAtMs: 0 },
  ]);
  assertEquals([stale.error?.name, await value("e")], ["ConflictError", "from c"]);
});

Deno.test("a transaction that changes no key takes a revision only for its request id's record", async () => {
  await using engine = await Engine.open("/sm", { fs: new MemFileSystem() });
  const sm = new StateMachine(engine);
  const a = (await sm.apply([{ index: 1, data: put("a", "1", "") }])).get(1)!.revision;
  // Conditions alone and a delete of a key that does not exist: no key changes.
  const noop = (requestId: string) =>
    encodeCommand({
      op: CommandOp.Txn,
      timestampMs: 1_000,
      requestId,
      writes: [
        { key: utf8("a"), value: undefined, expiresAtMs: 0, ifVersion: a, checkOnly: true },
        { key: utf8("missing"), value: undefined, expiresAtMs: 0, ifVersion: 0 },
      ],
    });
  // Without an id nothing is stored: no revision (as in etcd).
  const bare = (await sm.apply([{ index: 2, data: noop("") }])).get(2)!;
  assertEquals([bare.revision, bare.changed, bare.error, sm.revision], [a, false, undefined, a]);
  // With one, its record gets a revision of this entry's own, which the engine holds: nothing is
  // ever stored at the revision of an earlier entry (a snapshot reads the engine by revision).
  const first = (await sm.apply([{ index: 3, data: noop("noop-1") }])).get(3)!;
  assertEquals([first.revision, sm.revision, engine.currentVersion], [a + 1, a + 1, a + 1]);
  const retry = (await sm.apply([{ index: 4, data: noop("noop-1") }])).get(4)!;
  assertEquals([retry.deduplicated, retry.revision, sm.revision], [true, a + 1, a + 1]);
  assertEquals(await sm.appliedRequest("noop-1", 1_000), { revision: a + 1, appliedAtMs: 1_000 });
  // A batch with an id whose writes changed nothing: the same.
  const batch = encodeCommand({
    op: CommandOp.Batch,
    timestampMs: 1_000,
    requestId: "batch-1",
    commands: [{
      op: CommandOp.Delete,
      timestampMs: 1_000,
      requestId: "",
      key: utf8("missing"),
      ifVersion: undefined,
    }],
  });
  const b = (await sm.apply([{ index: 5, data: batch }])).get(5)!;
  assertEquals([b.revision, b.changed, engine.currentVersion], [a + 2, false, a + 2]);
});

Deno.test("a put reads the previous value only when its proposer or a watcher wants it", async () => {
  await using engine = await Engine.open("/sm", { fs: new MemFileSystem() });
  const sm = new StateMachine(engine);
  let watcherWantsPrev = false;
  sm.wantPrevForEvents = () => watcherWantsPrev;
  const events: (string | undefined)[] = [];
  sm.onChange = (changes) => {
    for (const c of changes) events.push(c.prev && new TextDecoder().decode(c.prev.value));
  };
  const wanting = { ...decodeCommand(put("k", "2", "")), wantPrev: true };
  await sm.apply([{ index: 1, data: put("k", "1", "") }]);
  const blind = (await sm.apply([{ index: 2, data: put("k", "2", "") }])).get(2)!;
  const asked = (await sm.apply([{ index: 3, data: encodeCommand(wanting) }])).get(3)!;
  watcherWantsPrev = true;
  await sm.apply([{ index: 4, data: put("k", "3", "") }]);
  assertEquals(blind.prev, undefined);
  assertEquals(asked.prev?.version, 2);
  assertEquals(events, [undefined, undefined, "2", "2"]);
});

Deno.test("entries whose changes outgrow one WAL record apply as several writes and all survive a reopen", async () => {
  const fs = new MemFileSystem();
  const engine = await Engine.open("/sm", { fs });
  const sm = new StateMachine(engine);
  const big = "v".repeat(1024 * 1024);
  // 40 MiB of values in one apply call (a follower catching up on maximum-size puts).
  const entries: ApplyEntry[] = [];
  for (let i = 1; i <= 40; i++) {
    entries.push({ index: i, data: encodeCommand(plainPut(`k${i}`, big)) });
  }
  const results = await sm.apply(entries);
  assertEquals(results.get(40)!.revision, 40);
  await engine.close();
  const back = await Engine.open("/sm", { fs });
  assertEquals(back.appliedIndex, 40);
  for (const i of [1, 20, 40]) {
    const kv = await back.get(utf8(`k${i}`));
    assertEquals(kv?.value.length, big.length);
  }
  await back.close();
});

Deno.test("writes whose reads need the disk (cold table blocks) apply like writes read from memory", async () => {
  const fs = new MemFileSystem();
  const first = await Engine.open("/cold", { fs });
  await new StateMachine(first).apply([
    { index: 1, data: put("a", "1", "req-1") },
    { index: 2, data: put("b", "2", "req-2") },
  ]);
  await first.flush();
  await first.close();
  // Reopened: the keys and request ids live in a table whose blocks are not cached.
  await using engine = await Engine.open("/cold", { fs });
  assertEquals(engine.getNow(utf8("a")), readNeedsIo, "the test needs a cold block");
  const sm = new StateMachine(engine);
  const del = (key: string, requestId: string): BatchableCommand => ({
    op: CommandOp.Delete,
    timestampMs: 1_000,
    requestId,
    key: utf8(key),
    ifVersion: undefined,
  });
  const results = await sm.apply([
    { index: 3, data: put("a", "1", "req-1") }, // a retry of index 1
    {
      index: 4,
      data: encodeCommand({
        op: CommandOp.Batch,
        timestampMs: 1_000,
        requestId: "",
        commands: [del("b", "req-3"), del("b", "req-4"), del("missing", "req-5")],
      }),
    },
  ]);
  assertEquals(results.get(3), {
    revision: 1,
    changed: true,
    deduplicated: true,
    appliedAtMs: 1_000,
  });
  const batch = results.get(4)!.results!;
  // The two deletes that found nothing carry ids: each takes a revision for its id's record.
  assertEquals(batch.map((r) => [r.revision, r.changed]), [[3, true], [4, false], [5, false]]);
  assertEquals(new TextDecoder().decode(batch[0].prev!.value), "2", "the delete saw b's value");
  assertEquals(await engine.get(utf8("b")), undefined);
  assertEquals(sm.revision, 5);
});

Deno.test("reads inside one apply batch see the batch's earlier writes, before and after the first read", async () => {
  // The batch's writes are indexed by key only once something reads (PendingWrites);
  // writes before that read and after it must both be seen by later reads.
  await using engine = await Engine.open("/sm", { fs: new MemFileSystem() });
  const sm = new StateMachine(engine);
  const cas = (key: string, value: string, id: string, ifVersion: number) =>
    ({ ...decodeCommand(put(key, value, id)), ifVersion }) as BatchableCommand;
  const del = (key: string, id: string): BatchableCommand => ({
    op: CommandOp.Delete,
    timestampMs: 1_000,
    requestId: id,
    key: utf8(key),
    ifVersion: undefined,
  });
  const commands: BatchableCommand[] = [
    decodeCommand(put("a", "1", "w1")) as BatchableCommand, // revision 1
    decodeCommand(put("a", "2", "w2")) as BatchableCommand, // revision 2
    cas("a", "3", "w3", 2), // the first read: sees revision 2, writes revision 3
    cas("a", "4", "w4", 2), // a is at 3 now: conflict (its id's record takes revision 4)
    decodeCommand(put("b", "x", "w5")) as BatchableCommand, // revision 5, after the first read
    del("b", "w6"), // sees b: revision 6
    cas("b", "y", "w7", 0), // b is deleted in this batch: "must be absent" holds, revision 7
  ];
  const batch = encodeCommand({ op: CommandOp.Batch, timestampMs: 1_000, requestId: "", commands });
  const r = (await sm.apply([{ index: 1, data: batch }])).get(1)!;
  assertEquals(
    r.results!.map((x) => x.error?.name ?? x.revision),
    [1, 2, 3, "ConflictError", 5, 6, 7],
  );
  assertEquals(new TextDecoder().decode((await engine.get(utf8("a")))?.value), "3");
  assertEquals(new TextDecoder().decode((await engine.get(utf8("b")))?.value), "y");
});

Deno.test("a snapshot captured while an apply runs describes one state, and a follower built from it converges", async () => {
  const put = (k: string, v: string) => encodeCommand(plainPut(k, v)); // no request ids
  const log = [put("a", "1"), put("b", "2"), put("c", "3"), put("b", "4")];
  await using leaderEngine = await Engine.open("/leader", { fs: new MemFileSystem() });
  const leader = new StateMachine(leaderEngine);
  await leader.apply([{ index: 1, data: log[0] }]);
  // The replica loop asks for a snapshot while entries 2 and 3 are being applied.
  const applying = leader.apply([{ index: 2, data: log[1] }, { index: 3, data: log[2] }]);
  let captured: { index: number; revision: number; keys: string[] } | undefined;
  leader.atRest(() => {
    captured = { index: leader.appliedIndex, revision: leader.revision, keys: [] };
  });
  assertEquals(captured, undefined, "no capture in the middle of an apply");
  await applying;
  assertEquals(captured, { index: 3, revision: 3, keys: [] });
  await leader.apply([{ index: 4, data: log[3] }]);

  // A follower installs what the capture names, then applies the log after its index.
  await using followerEngine = await Engine.open("/follower", { fs: new MemFileSystem() });
  const batch = new WriteBatch();
  for await (const kv of leaderEngine.scan({ atVersion: captured!.revision, nowMs: 0 })) {
    batch.put(kv.key.slice(), kv.value.slice(), { version: kv.version });
  }
  batch.put(snapshotRevisionKey, encodeSnapshotDescriptor(captured!.revision), {
    version: captured!.revision,
  });
  await followerEngine.write(batch, { sync: true, appliedIndex: captured!.index });
  const follower = new StateMachine(followerEngine);
  await follower.apply(log.map((data, i) => ({ index: i + 1, data })));
  assertEquals(follower.revision, leader.revision);
  for (const key of ["a", "b", "c"]) {
    const [l, f] = [await leaderEngine.get(utf8(key)), await followerEngine.get(utf8(key))];
    assertEquals(f?.version, l?.version, `version of ${key}`);
  }
  // At rest, the callback runs at once.
  let ran = false;
  leader.atRest(() => (ran = true));
  assertEquals(ran, true);
});

/** Three old writes with request ids, a history compaction well after they expire, a write. */
function compactionLog(compactRevision: number): ApplyEntry[] {
  const t0 = 1_700_000_000_000;
  const later = t0 + requestIdRetentionMs + 60_000;
  const write = (index: number, key: string, ts: number, requestId: string): ApplyEntry => ({
    index,
    data: encodeCommand({
      op: CommandOp.Put,
      timestampMs: ts,
      requestId,
      key: utf8(key),
      value: utf8(`v${index}`),
      expiresAtMs: 0,
      ifVersion: undefined,
    }),
  });
  return [
    write(1, "a", t0, "id1"),
    write(2, "b", t0, "id2"),
    write(3, "c", t0, "id3"),
    {
      index: 4,
      data: encodeCommand({
        op: CommandOp.CompactHistory,
        timestampMs: later,
        revision: compactRevision,
      }),
    },
    write(5, "d", later, ""),
  ];
}

Deno.test("a history compaction replayed after a crash leaves every replica at the same revision", async () => {
  const log = compactionLog(2);
  const fs = new MemFileSystem();
  const reference = new StateMachine(await Engine.open("/ref", { fs: new MemFileSystem() }));
  await reference.apply(log.slice(0, 3));
  const compacted = await reference.apply(log.slice(3));
  assertEquals(compacted.get(4)?.error, undefined);

  let sm = new StateMachine(await Engine.open("/kv", { fs }));
  await sm.apply(log.slice(0, 3));
  await sm.apply([log[3]]); // the compaction reaches the manifest; its batch need not be durable
  const engine = await Engine.open("/kv", { fs: fs.crashClone() });
  sm = new StateMachine(engine);
  await sm.apply(log.filter((e) => e.index > sm.appliedIndex)); // Raft replays the rest
  assertEquals(sm.revision, reference.revision);
  assertEquals(
    (await engine.get(utf8("d")))?.version,
    (await reference.engine.get(utf8("d")))?.version,
  );
  assertEquals(engine.compactedVersion, 2);
  await engine.close();
  await reference.engine.close();
});

Deno.test("a replica whose history is compacted further (a snapshot install) applies a compaction like the others", async () => {
  const log = compactionLog(2);
  await using leaderEngine = await Engine.open("/leader", { fs: new MemFileSystem() });
  await using followerEngine = await Engine.open("/follower", { fs: new MemFileSystem() });
  const leader = new StateMachine(leaderEngine);
  const follower = new StateMachine(followerEngine);
  await leader.apply(log.slice(0, 3));
  await follower.apply(log.slice(0, 3));
  await followerEngine.compactHistory(3); // as an installed snapshot at revision 3 leaves it
  const onLeader = await leader.apply(log.slice(3));
  const onFollower = await follower.apply(log.slice(3));
  assertEquals(onLeader.get(4)?.error, undefined);
  assertEquals(onFollower.get(4)?.error?.name, "CompactedError");
  assertEquals(follower.revision, leader.revision);
  assertEquals(onFollower.get(5)?.revision, onLeader.get(5)?.revision);
});

Deno.test("a compaction to a revision written earlier in the same apply batch", async () => {
  await using engine = await Engine.open("/kv", { fs: new MemFileSystem() });
  const sm = new StateMachine(engine);
  const results = await sm.apply(compactionLog(3));
  assertEquals(results.get(4)?.error, undefined);
  assertEquals(engine.compactedVersion, 3);
  assertEquals(sm.revision, 5); // three writes, the forgotten ids' revision, the last write
});

/** Applies `log` (entries 1..n) in the given groups; returns what a replica ends up with. */
async function applyGrouped(log: Uint8Array[], groups: number[][]) {
  await using engine = await Engine.open("/g", { fs: new MemFileSystem() });
  const sm = new StateMachine(engine);
  const events: string[] = [];
  sm.onChange = (evs) => {
    for (const e of evs) {
      const prev = e.prev ? `${new TextDecoder().decode(e.prev.value)}@${e.prev.version}` : "none";
      events.push(`${e.type}@${e.kv.version} prev=${prev}`);
    }
  };
  const results: string[] = [];
  for (const g of groups) {
    const out = await sm.apply(g.map((i) => ({ index: i + 1, data: log[i] })));
    for (const i of g) results.push(`${i + 1}:${out.get(i + 1)!.revision}`);
  }
  return { revision: sm.revision, results, events };
}

Deno.test("request-id dedupe around a history compaction does not depend on how entries are grouped", async () => {
  const t = 1_700_000_000_000;
  const window = requestIdRetentionMs;
  const write = (ts: number, id: string, value: string) =>
    encodeCommand({
      op: CommandOp.Put,
      timestampMs: ts,
      requestId: id,
      key: utf8("a"),
      value: utf8(value),
      expiresAtMs: 0,
      ifVersion: undefined,
    });
  const compact = (ts: number) =>
    encodeCommand({ op: CommandOp.CompactHistory, timestampMs: ts, revision: 1 });
  // An id used again after its window, the compaction its old time record triggers, and a retry
  // of the second use: the retry is a duplicate (the second use's record is not expiring).
  const reused = [
    write(t, "X", "1"),
    write(t + window + 1, "X", "2"),
    compact(t + window + 2),
    write(t + window + 3, "X", "2"),
  ];
  // A retry carrying its original, older timestamp (a follower's clock) after the compaction
  // forgot its id: applied again, whatever the grouping.
  const late = [write(t, "Y", "1"), compact(t + window + 2), write(t + window, "Y", "1")];
  for (const log of [reused, late]) {
    const one = await applyGrouped(log, log.map((_, i) => [i]));
    for (
      const groups of [[log.map((_, i) => i)], [log.map((_, i) => i).slice(0, -1), [
        log.length - 1,
      ]]]
    ) {
      assertEquals(await applyGrouped(log, groups), one, JSON.stringify(groups));
    }
  }
  const reusedAlone = await applyGrouped(reused, [[0], [1], [2], [3]]);
  assertEquals(
    reusedAlone.results.at(-1),
    "4:2",
    "the retry of the second use is answered as a duplicate",
  );
});

Deno.test("an expiry's event reports the value it deletes, also one written earlier in its batch", async () => {
  const put = (value: string, expiresAtMs: number) =>
    encodeCommand({
      op: CommandOp.Put,
      timestampMs: 1_000,
      requestId: "",
      key: utf8("k"),
      value: utf8(value),
      expiresAtMs,
      ifVersion: undefined,
    });
  const log = [
    put("old", 0),
    put("new", 2_000),
    encodeCommand({ op: CommandOp.ExpireKey, timestampMs: 2_500, key: utf8("k"), version: 2 }),
  ];
  const alone = await applyGrouped(log, [[0], [1], [2]]);
  assertEquals(alone.events.at(-1), "delete@3 prev=new@2");
  assertEquals(await applyGrouped(log, [[0], [1, 2]]), alone);
  assertEquals(await applyGrouped(log, [[0, 1, 2]]), alone);
});

Deno.test("a history compaction above the current revision is answered as a future version", async () => {
  const engine = await Engine.open("/sm", { fs: new MemFileSystem() });
  try {
    const sm = new StateMachine(engine);
    await sm.apply([{ index: 1, data: put("a", "1", "") }]);
    const compact = encodeCommand({ op: CommandOp.CompactHistory, timestampMs: 1, revision: 5 });
    const r = (await sm.apply([{ index: 2, data: compact }])).get(2)!;
    assertEquals([r.error?.name, r.revision, sm.revision], ["FutureVersionError", 1, 1]);
  } finally {
    await engine.close();
  }
});

Deno.test("a second copy of a write that changed nothing answers as the first, not judged again on newer state", async () => {
  await using engine = await Engine.open("/sm", { fs: new MemFileSystem() });
  const sm = new StateMachine(engine);
  let index = 0;
  const apply = async (data: Uint8Array) =>
    (await sm.apply([{ index: ++index, data }])).get(index)!;
  const del = (key: string, requestId: string) =>
    encodeCommand({
      op: CommandOp.Delete,
      timestampMs: 1_000,
      requestId,
      key: utf8(key),
      ifVersion: undefined,
    });
  const setnx = (key: string, value: string, requestId: string) =>
    encodeCommand({ ...plainPut(key, value, requestId), ifVersion: 0 } as BatchableCommand);
  const value = async (key: string) => {
    const kv = await engine.get(utf8(key));
    return kv && new TextDecoder().decode(kv.value);
  };

  // DEL of an absent key, relayed; the leader applies it, then another client's SET, then the
  // DEL's copy (sent again when its answer was late): the copy must not delete the SET's value.
  const first = await apply(del("kb", "del-1"));
  assertEquals([first.changed, first.deduplicated], [false, undefined]);
  await apply(put("kb", "v", "set-1"));
  const copy = await apply(del("kb", "del-1"));
  assertEquals([copy.changed, copy.deduplicated, copy.revision], [false, true, first.revision]);
  assertEquals(await value("kb"), "v", "another client's acknowledged write survives");

  // SETNX on a key that exists fails; the key is deleted; the SETNX's copy must fail too.
  await apply(put("ka", "x", "set-2"));
  const nx = await apply(setnx("ka", "a", "nx-1"));
  assertEquals(nx.error?.name, "ConflictError");
  await apply(del("ka", "del-2"));
  const nxCopy = await apply(setnx("ka", "a", "nx-1"));
  assertEquals([nxCopy.error?.name, nxCopy.deduplicated, nxCopy.revision], [
    "ConflictError",
    true,
    nx.revision,
  ]);
  assertEquals(await value("ka"), undefined, "not created by the copy");

  // MSETNX from RESP: a transaction whose failed conditions are its outcome (conflictIsFinal).
  const msetnx = (conflictIsFinal: boolean, requestId: string) =>
    encodeCommand({
      op: CommandOp.Txn,
      timestampMs: 1_000,
      requestId,
      conflictIsFinal,
      writes: ["k1", "k2"].map((k) => ({
        key: utf8(k),
        value: utf8("a"),
        expiresAtMs: 0,
        ifVersion: 0,
      })),
    });
  assertEquals(decodeCommand(msetnx(true, "x")), decodeCommand(msetnx(true, "x")));
  await apply(put("k1", "x", "set-3"));
  const m = await apply(msetnx(true, "mx-1"));
  assertEquals(m.error?.name, "ConflictError");
  await apply(del("k1", "del-3"));
  const mCopy = await apply(msetnx(true, "mx-1"));
  assertEquals([mCopy.error?.name, mCopy.deduplicated], ["ConflictError", true]);
  assertEquals(await value("k1"), undefined, "the copy wrote nothing");
  // A gRPC transaction's id stays free after a failed condition: its re-planned proposal runs.
  await apply(put("k1", "x", "set-4"));
  const g = await apply(msetnx(false, "gx-1"));
  assertEquals([g.error?.name, g.revision], ["ConflictError", sm.revision]);
  await apply(del("k1", "del-4"));
  assertEquals((await apply(msetnx(false, "gx-1"))).changed, true);
  assertEquals(await value("k1"), "a");
});

Deno.test("an empty batch with an id is remembered with a record that reads back", async () => {
  await using engine = await Engine.open("/sm", { fs: new MemFileSystem() });
  const sm = new StateMachine(engine);
  const empty = encodeCommand({
    op: CommandOp.Batch,
    timestampMs: 1_000,
    requestId: "B",
    commands: [],
  });
  const first = (await sm.apply([{ index: 1, data: empty }])).get(1)!;
  const again = (await sm.apply([{ index: 2, data: empty }])).get(2)!;
  assertEquals([again.deduplicated, again.revision], [true, first.revision]);
  assertEquals([again.changed, again.results], [false, []], "as the first apply answered");
});
