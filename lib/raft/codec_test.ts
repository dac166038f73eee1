import { DecodeError, utf8 } from "../common/bytes.ts";
import { SeededRandom } from "../common/random.ts";
import { assertEquals, assertThrows, assertTrue } from "../common/test_helpers.ts";
import {
  decodeConfChange,
  decodeEntry,
  decodeHardState,
  decodeMessage,
  decodeSnapshot,
  encodeConfChange,
  encodeEntry,
  encodeHardState,
  encodeMessage,
  encodeSnapshot,
  raftFormatVersion,
} from "./codec.ts";
import {
  type Entry,
  EntryType,
  type Message,
  MessageType,
  newMessage,
  type Snapshot,
} from "./types.ts";

const entry = (index: number, term: number, data: string, type = EntryType.Normal): Entry => ({
  index,
  term,
  type,
  groupId: 7,
  data: utf8(data),
});

const snap: Snapshot = {
  meta: { index: 40, term: 3, conf: { voters: ["n1", "n2", "n3"], learners: ["n4"] } },
  data: utf8("state machine descriptor"),
};

Deno.test("codec: every message type round-trips with all fields", () => {
  for (let t = 0; t <= MessageType.Propose; t++) {
    const m: Message = newMessage({
      type: t,
      groupId: 7,
      from: "node1",
      to: "node2",
      term: 12,
      logTerm: 11,
      index: 2 ** 40,
      entries: [entry(5, 11, "a"), entry(6, 12, "", EntryType.ConfChange)],
      commit: 4,
      reject: t % 2 === 1,
      rejectHint: 3,
    });
    if (t === MessageType.Snapshot) m.snapshot = snap;
    if (t === MessageType.Heartbeat) m.context = new Uint8Array([0, 1, 2]);
    assertEquals(decodeMessage(encodeMessage(m)), m);
  }
});

Deno.test("codec: entries, hard states, snapshots and conf changes round-trip", () => {
  const e = entry(Number.MAX_SAFE_INTEGER, 9, "payload");
  assertEquals(decodeEntry(encodeEntry(e)), e);
  const hs = { term: 5, vote: "node3", commit: 99 };
  assertEquals(decodeHardState(encodeHardState(hs)), hs);
  const utf = { term: 1, vote: "nœud-é", commit: 0 };
  assertEquals(decodeHardState(encodeHardState(utf)), utf, "non-ASCII ids take the slow path");
  const long = { term: 1, vote: "n".repeat(200), commit: 0 };
  assertEquals(decodeHardState(encodeHardState(long)), long);
  assertEquals(decodeSnapshot(encodeSnapshot(snap)), snap);
  const cc = { type: "addLearner" as const, nodeId: "node9", context: utf8("127.0.0.1:7009") };
  assertEquals(decodeConfChange(encodeConfChange(cc)), cc);
  assertEquals(decodeConfChange(encodeConfChange({ type: "removeNode", nodeId: "x" })), {
    type: "removeNode",
    nodeId: "x",
  });
});

Deno.test("codec: records start with the format version and their kind", () => {
  const bytes = encodeHardState({ term: 1, vote: "", commit: 0 });
  assertEquals(bytes[0], raftFormatVersion);
  assertEquals(bytes[1], 3);
  const bad = bytes.slice();
  bad[0] = 99;
  assertThrows(() => decodeHardState(bad), DecodeError, "unknown raft format version 99");
  assertThrows(() => decodeEntry(bytes), DecodeError, "expected record kind 2");
});

Deno.test("codec: garbage and truncations raise DecodeError, never a half-built value", () => {
  const m = encodeMessage(newMessage({
    type: MessageType.Append,
    groupId: 1,
    from: "n1",
    to: "n2",
    entries: [entry(1, 1, "hello")],
    snapshot: snap,
    context: utf8("c"),
  }));
  for (let cut = 0; cut < m.length; cut++) {
    assertThrows(() => decodeMessage(m.subarray(0, cut)), DecodeError);
  }
  assertThrows(() => decodeMessage(new Uint8Array([...m, 0])), DecodeError, "trailing");
  const rnd = new SeededRandom(5);
  let decoded = 0;
  for (let i = 0; i < 2000; i++) {
    const junk = m.slice();
    junk[2 + rnd.nextInt(junk.length - 2)] ^= 1 << rnd.nextInt(8);
    try {
      decodeMessage(junk);
      decoded++;
    } catch (e) {
      assertTrue(e instanceof DecodeError, `flipped bit raised ${e}`);
    }
  }
  assertTrue(decoded < 2000);
  assertThrows(
    () => decodeConfChange(new Uint8Array([1, 5, 9, 0])),
    DecodeError,
    "unknown conf change type",
  );
  const badType = encodeEntry(entry(1, 1, "x"));
  badType[5] = 7;
  assertThrows(() => decodeEntry(badType), DecodeError, "unknown entry type 7");
});
