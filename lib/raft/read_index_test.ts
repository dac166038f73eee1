// Linearizable reads with ReadIndex (§8, thesis §6.4).
import { utf8 } from "../common/bytes.ts";
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { TestCluster } from "./testing.ts";
import { MessageType } from "./types.ts";

Deno.test("§8 ReadIndex: the leader releases a read after a heartbeat round, at its commit index", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  c.node("n1").propose(utf8("x"));
  c.stabilize();
  assertTrue(c.node("n1").readIndex(utf8("r1")).ok);
  const rd = c.processReady("n1")!;
  assertEquals(rd.readStates, [], "not before a quorum confirms leadership");
  const hb = rd.messages.filter((m) => m.type === MessageType.Heartbeat);
  assertEquals(hb.length, 2, "one heartbeat round for the read");
  c.stabilize();
  assertEquals(c.peer("n1").reads, [{ index: 2, context: "r1" }]);
});

Deno.test("§8 ReadIndex: many reads share one heartbeat round", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  for (let i = 0; i < 50; i++) c.node("n1").readIndex(utf8(`r${i}`));
  const rd = c.processReady("n1")!;
  assertEquals(rd.messages.filter((m) => m.type === MessageType.Heartbeat).length, 2);
  c.stabilize();
  assertEquals(c.peer("n1").reads.length, 50);
  assertEquals(c.peer("n1").reads.map((r) => r.context).slice(0, 3), ["r0", "r1", "r2"]);
});

Deno.test("§8 ReadIndex: a follower forwards the read to the leader and gets the index back", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  c.node("n1").propose(utf8("x"));
  c.stabilize();
  assertTrue(c.node("n3").readIndex(utf8("f1")).ok);
  c.stabilize();
  assertEquals(c.peer("n3").reads, [{ index: 2, context: "f1" }]);
  assertEquals(c.peer("n1").reads, []);
});

Deno.test("§8 ReadIndex: a follower without a leader refuses", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  assertEquals(c.node("n2").readIndex(utf8("r")), { ok: false, reason: "notLeader", leaderId: "" });
});

Deno.test("§8 ReadIndex: a new leader serves reads only after an entry of its term commits", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.node("n1").campaign();
  // Run until n1 is leader but its no-op is not committed yet.
  while (c.node("n1").status().role !== "leader") {
    c.processAll();
    c.deliver();
  }
  assertEquals(c.node("n1").status().commit, 0);
  assertTrue(c.node("n1").readIndex(utf8("early")).ok);
  c.processAll();
  assertEquals(c.peer("n1").reads, []);
  c.stabilize();
  assertEquals(
    c.peer("n1").reads,
    [{ index: 1, context: "early" }],
    "released at the no-op's index",
  );
});

Deno.test("§8 ReadIndex: a heartbeat round sent before the request does not confirm it", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  c.node("n1").readIndex(utf8("a"));
  c.processReady("n1"); // round 1 heartbeats are queued
  c.node("n1").readIndex(utf8("b")); // arrives after round 1 left
  c.deliver((m) => m.type === MessageType.Heartbeat);
  c.processAll();
  c.deliver((m) => m.type === MessageType.HeartbeatResponse);
  assertEquals(c.peer("n1").reads.map((r) => r.context), [], "reads show up in the next Ready");
  c.processReady("n1");
  assertEquals(c.peer("n1").reads.map((r) => r.context), ["a"], "b needs its own round");
  c.stabilize();
  assertEquals(c.peer("n1").reads.map((r) => r.context), ["a", "b"]);
});

Deno.test("§6.4 a deposed leader cannot serve a ReadIndex read", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  c.isolate("n1");
  c.elect("n2");
  assertEquals(c.node("n2").status().term, 2);
  assertTrue(c.node("n2").propose(utf8("new")).ok);
  c.stabilize();
  // n1 still believes it leads term 1.
  assertEquals(c.node("n1").status().role, "leader");
  assertTrue(c.node("n1").readIndex(utf8("stale")).ok);
  for (let i = 0; i < 30; i++) {
    c.tick("n1");
    c.stabilize();
  }
  assertEquals(c.peer("n1").reads, [], "no quorum answers a deposed leader");
  c.heal();
  c.tickAll(5);
  assertEquals(c.node("n1").status().role, "follower");
  assertEquals(c.peer("n1").reads, [], "the pending read died with the old term");
  // A read through n1 now goes to n2 and sees the new write.
  c.node("n1").readIndex(utf8("fresh"));
  c.stabilize();
  assertEquals(c.peer("n1").reads, [{ index: 3, context: "fresh" }]);
});

Deno.test("§8 ReadIndex: a single voter serves reads at once", () => {
  const c = new TestCluster(["n1"]);
  c.elect("n1");
  c.node("n1").readIndex(utf8("solo"));
  c.processReady("n1");
  assertEquals(c.peer("n1").reads, [{ index: 1, context: "solo" }]);
});
