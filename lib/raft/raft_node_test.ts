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
