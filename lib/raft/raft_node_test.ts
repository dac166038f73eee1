// The Ready contract of RaftNode (lib/raft/README.md).
import { utf8 } from "../common/bytes.ts";
import { AssertionError } from "../common/assert.ts";
import { SeededRandom } from "../common/random.ts";
import { assertEquals, assertThrows, assertTrue } from "../common/test_helpers.ts";
import { defaultElectionTicks, defaultHeartbeatTicks } from "./config.ts";
import { RaftNode } from "./raft_node.ts";
import { MemoryStorage } from "./storage.ts";
import { TestCluster } from "./testing.ts";
import { MessageType } from "./types.ts";

Deno.test("Ready: an idle node has nothing to do; ready() twice without advance() is a bug", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  for (const id of ["n1", "n2", "n3"]) assertTrue(!c.node(id).hasReady(), `${id} is idle`);
  const n1 = c.node("n1");
  n1.propose(utf8("x"));
  const rd = n1.ready();
  assertTrue(!n1.hasReady(), "nothing more until advance()");
  assertThrows(() => n1.ready(), AssertionError, "before advance");
  n1.advance(rd);
  assertThrows(() => n1.advance(rd), AssertionError);
});

Deno.test("Ready: a leader sends Appends before persisting; a follower acks only after", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  c.node("n1").propose(utf8("x"));
  const rd = c.processReady("n1")!;
  assertTrue(rd.mustSync);
  assertEquals(rd.messages.map((m) => MessageType[m.type]), ["Append", "Append"]);
  assertEquals(rd.persistedMessages, []);
  c.deliver();
  const f = c.processReady("n2")!;
  assertEquals(f.messages, []);
  assertEquals(f.persistedMessages.map((m) => [MessageType[m.type], m.index]), [[
    "AppendResponse",
    2,
  ]]);
});

Deno.test("Ready: the leader's own entry counts toward commit only after advance()", () => {
  const c = new TestCluster(["n1"]);
  c.elect("n1");
  const n1 = c.node("n1");
  const st = c.peer("n1").storage;
  n1.propose(utf8("x"));
  const rd = n1.ready();
  assertEquals(rd.entries.length, 1);
  assertEquals(rd.committedEntries, [], "not durable yet: not committed");
  st.append(rd.entries);
  n1.advance(rd);
  const rd2 = n1.ready();
  assertEquals(rd2.committedEntries.map((e) => e.index), [2]);
  assertEquals(rd2.hardState?.commit, 2);
  n1.advance(rd2);
});

Deno.test("Ready: steps between ready() and advance() land in the next Ready", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  const n1 = c.node("n1");
  n1.propose(utf8("a"));
  const rd = n1.ready();
  n1.propose(utf8("b")); // arrives while the driver persists "a"
  c.peer("n1").storage.append(rd.entries);
  n1.advance(rd);
  const rd2 = n1.ready();
  assertEquals(rd2.entries.map((e) => e.index), [3]);
  n1.advance(rd2);
});

/**
 * A 3-node cluster whose leader n1 proposed one entry (index 2) and handed
 * it to a write that is still in flight; its Appends are queued.
 */
function leaderWritingBehind() {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  const n1 = c.node("n1");
  n1.propose(utf8("x"));
  const rd = n1.ready();
  c.queue.push(...rd.messages);
  n1.advanceBeforePersisted(rd);
  return { c, n1, rd };
}

Deno.test("write-behind: a leader commits with two followers' copies before its own is durable", () => {
  const { c, n1, rd } = leaderWritingBehind(); // the write of entry 2 is still in flight
  assertEquals(rd.entries.map((e) => e.index), [2]);
  assertTrue(!n1.hasReady(), "entry 2 is handed out once");
  c.deliver();
  c.processReady("n2");
  c.processReady("n3");
  c.deliver(); // both acks reach n1
  const rd2 = n1.ready();
  assertEquals(rd2.entries, []);
  assertEquals(rd2.committedEntries.map((e) => e.index), [2], "n2 and n3 hold it: committed");
  n1.advanceBeforePersisted(rd2);
  c.peer("n1").storage.append(rd.entries);
  n1.persisted(2, rd.entries[0].term);
  assertEquals(n1.status().progress["n1"].match, 2, "durable now: the leader's own copy counts");
});

Deno.test("write-behind: one follower's copy is not enough while the leader's is in flight", () => {
  const { c, n1, rd } = leaderWritingBehind();
  c.deliver((m) => m.to === "n2");
  c.queue = [];
  c.processReady("n2");
  c.deliver((m) => m.to === "n1");
  assertEquals(n1.status().commit, 1, "n2 alone: no quorum");
  c.peer("n1").storage.append(rd.entries);
  n1.persisted(2, rd.entries[0].term);
  assertEquals(n1.status().commit, 2, "n1 durable + n2: quorum");
});

Deno.test("write-behind: entries proposed meanwhile wait when held, then go out together", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  const n1 = c.node("n1");
  n1.propose(utf8("a"));
  const rd = n1.ready();
  n1.advanceBeforePersisted(rd);
  n1.propose(utf8("b"));
  n1.propose(utf8("c"));
  // The Appends for b and c go out at once; their write waits for a's.
  assertTrue(n1.hasReady(true));
  const held = n1.ready(true);
  assertEquals(held.entries, []);
  assertTrue(held.messages.some((m) => m.entries.length > 0), "replication does not wait");
  n1.advanceBeforePersisted(held);
  assertTrue(!n1.hasReady(true), "only held entries are left");
  n1.persisted(2, rd.entries[0].term);
  const next = n1.ready();
  assertEquals(next.entries.map((e) => e.index), [3, 4]);
  n1.advance(next);
});

Deno.test("write-behind: committed entries past applyUpTo wait in the core", () => {
  const { c, n1 } = leaderWritingBehind();
  c.deliver();
  c.processReady("n2");
  c.processReady("n3");
  c.deliver(); // n2 and n3 persisted and acked: entry 2 commits without n1's copy
  assertEquals(n1.status().commit, 2);
  const held = n1.ready(false, 1);
  assertEquals(held.committedEntries, []);
  n1.advanceBeforePersisted(held);
  assertTrue(!n1.hasReady(false, 1), "nothing more to hand out up to index 1");
  assertTrue(n1.hasReady(false, 2));
  const next = n1.ready(false, 2);
  assertEquals(next.committedEntries.map((e) => e.index), [2]);
  n1.advanceBeforePersisted(next);
});

Deno.test("lazy commit broadcast: a commit rides on the next Append, or goes out at the next tick", () => {
  const c = new TestCluster(["n1", "n2", "n3"], { lazyCommitBroadcast: true, heartbeatTicks: 5 });
  c.elect("n1");
  const n1 = c.node("n1");
  const appendsTo = (msgs: { type: MessageType; to: string; commit: number }[], to: string) =>
    msgs.filter((m) => m.type === MessageType.Append && m.to === to).map((m) => m.commit);
  n1.propose(utf8("a"));
  c.stabilize();
  const commitOf = (id: string) => c.node(id).status().commit;
  assertEquals([commitOf("n1"), commitOf("n2"), commitOf("n3")], [2, 1, 1], "no empty Append");
  n1.propose(utf8("b"));
  const rd = c.processReady("n1")!;
  assertEquals(appendsTo(rd.messages, "n2"), [2], "b's Append carries a's commit");
  c.stabilize();
  assertEquals([commitOf("n2"), commitOf("n3")], [2, 2]);
  c.tick("n1"); // the last commit goes out at the tick, well before the heartbeat
  const tickRd = c.processReady("n1")!;
  assertEquals(appendsTo(tickRd.messages, "n2"), [3]);
  c.stabilize();
  assertEquals([commitOf("n2"), commitOf("n3")], [3, 3]);
  assertEquals(c.peer("n3").applied.map((e) => e.index), [1, 2, 3]);
  c.tick("n1");
  assertTrue(!n1.hasReady(), "nothing new to announce");
});

Deno.test("lazy commit broadcast: a follower that relayed an entry hears of its commit at once", () => {
  const c = new TestCluster(["n1", "n2", "n3"], { lazyCommitBroadcast: true, heartbeatTicks: 5 });
  c.elect("n1");
  const r = c.node("n2").proposeAnywhere(utf8("via n2"));
  assertTrue(r.ok && "forwardedTo" in r);
  c.stabilize();
  const commitOf = (id: string) => c.node(id).status().commit;
  assertEquals([commitOf("n1"), commitOf("n2"), commitOf("n3")], [2, 2, 1], "n3 waits for a tick");
  assertEquals(c.peer("n2").applied.map((e) => e.index), [1, 2]);
});

Deno.test("restart: committed entries after `applied` are handed out again, none before", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  for (let i = 0; i < 5; i++) c.node("n1").propose(utf8(`e${i}`));
  c.stabilize();
  const st = c.peer("n2").storage;
  const node = new RaftNode({
    id: "n2",
    groupId: 1,
    storage: st,
    random: new SeededRandom(3),
    electionTicks: 10,
    heartbeatTicks: 1,
    preVote: false,
    checkQuorum: false,
    applied: 4,
  });
  const s = node.status();
  assertEquals([s.term, s.commit, s.applied, s.role], [1, 6, 4, "follower"]);
  const rd = node.ready();
  assertEquals(rd.committedEntries.map((e) => e.index), [5, 6]);
  assertEquals(rd.hardState, undefined, "nothing changed since it was persisted");
  node.advance(rd);
});

Deno.test("config: defaults match the seed (10 ms tick: heartbeat 50 ms, election 150-300 ms)", () => {
  assertEquals([defaultElectionTicks, defaultHeartbeatTicks], [15, 5]);
  assertThrows(
    () =>
      new RaftNode({
        id: "n1",
        groupId: 1,
        storage: new MemoryStorage(),
        random: new SeededRandom(1),
        electionTicks: 5,
        heartbeatTicks: 5,
        preVote: true,
        checkQuorum: true,
      }),
    AssertionError,
    "electionTicks must exceed heartbeatTicks",
  );
});
