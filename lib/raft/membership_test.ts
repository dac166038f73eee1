// Membership changes one server at a time with learners (thesis ch. 4; paper §6)
// and leadership transfer (thesis §3.10).
import { utf8 } from "../common/bytes.ts";
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { applyConfChangeTo, validateConfChange } from "./membership.ts";
import { TestCluster } from "./testing.ts";
import { EntryType, MessageType, newMessage } from "./types.ts";

Deno.test("thesis §4.1 one pending membership change at a time", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  c.addPeer("n4");
  c.addPeer("n5");
  const first = c.node("n1").proposeMembershipChange({ type: "addLearner", nodeId: "n4" });
  assertTrue(first.ok);
  const second = c.node("n1").proposeMembershipChange({ type: "addLearner", nodeId: "n5" });
  assertEquals(second, { ok: false, reason: "pendingConfChange", leaderId: "n1" });
  c.stabilize();
  assertEquals(c.node("n1").status().conf, { voters: ["n1", "n2", "n3"], learners: ["n4"] });
  assertTrue(c.node("n1").proposeMembershipChange({ type: "addLearner", nodeId: "n5" }).ok);
  c.stabilize();
  assertEquals(c.node("n2").status().conf.learners, ["n4", "n5"]);
});

Deno.test("thesis §4.1 a new leader proposes no configuration until an entry of its term commits", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.node("n1").campaign();
  while (c.node("n1").status().role !== "leader") {
    c.processAll();
    c.deliver();
  }
  const res = c.node("n1").proposeMembershipChange({ type: "removeNode", nodeId: "n3" });
  assertEquals(res, { ok: false, reason: "termNotCommitted", leaderId: "n1" });
  c.stabilize();
  assertTrue(c.node("n1").proposeMembershipChange({ type: "removeNode", nodeId: "n3" }).ok);
});

Deno.test("thesis §4.2.1 a learner catches up without voting, then is promoted", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  for (let i = 0; i < 5; i++) c.node("n1").propose(utf8(`e${i}`));
  c.stabilize();
  c.addPeer("n4");
  assertTrue(c.node("n1").proposeMembershipChange({ type: "addLearner", nodeId: "n4" }).ok);
  c.stabilize();
  assertEquals(c.node("n4").status().commit, c.node("n1").status().commit);
  assertEquals(c.peer("n4").applied.length, c.peer("n1").applied.length);
  // A learner never campaigns.
  c.tick("n4", 100);
  c.stabilize();
  assertEquals(c.node("n4").status().role, "follower");
  assertEquals(c.node("n1").status().term, 1);
  // The commit quorum is still 2 of 3: learners do not count.
  c.isolate("n2");
  c.isolate("n3");
  c.node("n1").propose(utf8("needs a voter"));
  c.stabilize();
  const before = c.node("n1").status().commit;
  c.heal();
  c.stabilize();
  c.tickAll(2);
  assertTrue(c.node("n1").status().commit > before);
  // Promotion.
  assertTrue(c.node("n1").proposeMembershipChange({ type: "addVoter", nodeId: "n4" }).ok);
  c.stabilize();
  assertEquals(c.node("n4").status().conf, { voters: ["n1", "n2", "n3", "n4"], learners: [] });
  c.isolate("n1");
  c.elect("n4");
  assertEquals(c.node("n4").status().role, "leader");
});

Deno.test("thesis §4.2.2 a leader that removes itself steps down and the rest elect a leader", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  assertTrue(c.node("n1").proposeMembershipChange({ type: "removeNode", nodeId: "n1" }).ok);
  c.stabilize();
  assertEquals(c.node("n1").status().role, "follower");
  assertEquals(c.node("n2").status().conf.voters, ["n2", "n3"]);
  c.tickAll(40);
  const leaders = c.leaders();
  assertEquals(leaders.length, 1);
  assertTrue(leaders[0] !== "n1");
  c.tick("n1", 100);
  assertEquals(c.node("n1").status().role, "follower", "a removed server never campaigns");
});

Deno.test("thesis §4.2.3 a removed server that missed its removal cannot disrupt (PreVote + CheckQuorum)", () => {
  const c = new TestCluster(["n1", "n2", "n3"], { preVote: true, checkQuorum: true });
  c.elect("n1");
  c.cut.add("n1>n3"); // n3 will never hear that it was removed
  assertTrue(c.node("n1").proposeMembershipChange({ type: "removeNode", nodeId: "n3" }).ok);
  c.stabilize();
  assertEquals(c.node("n2").status().conf.voters, ["n1", "n2"]);
  assertEquals(c.node("n3").status().conf.voters, ["n1", "n2", "n3"]);
  c.heal();
  for (let i = 0; i < 100; i++) {
    c.tick("n3");
    c.tick("n1");
    c.tick("n2");
    c.stabilize();
  }
  assertEquals(c.leaders(), ["n1"]);
  assertEquals(c.node("n1").status().term, 1, "the removed server never forced a new term");
});

Deno.test("thesis §4 membership arithmetic: validation and tolerant apply", () => {
  const conf = { voters: ["n1", "n2"], learners: ["n3"] };
  assertEquals(
    validateConfChange(conf, { type: "addVoter", nodeId: "n1" }),
    "n1 is already a voter",
  );
  assertEquals(validateConfChange(conf, { type: "addVoter", nodeId: "n3" }), undefined);
  assertEquals(
    validateConfChange(conf, { type: "removeNode", nodeId: "n9" }),
    "n9 is not a member",
  );
  assertEquals(
    validateConfChange({ voters: ["n1"], learners: [] }, { type: "removeNode", nodeId: "n1" }),
    "cannot remove the last voter",
  );
  assertEquals(applyConfChangeTo(conf, { type: "addVoter", nodeId: "n3" }), {
    voters: ["n1", "n2", "n3"],
    learners: [],
  });
  assertEquals(applyConfChangeTo(conf, { type: "addLearner", nodeId: "n2" }), {
    voters: ["n1"],
    learners: ["n2", "n3"],
  });
  assertEquals(applyConfChangeTo(conf, { type: "removeNode", nodeId: "n9" }), conf);
});

Deno.test("thesis §4 the configuration travels in snapshots", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  c.addPeer("n4");
  assertTrue(c.node("n1").proposeMembershipChange({ type: "addLearner", nodeId: "n4" }).ok);
  c.cut.add("n1>n4");
  c.stabilize();
  for (let i = 0; i < 10; i++) c.node("n1").propose(utf8(`e${i}`));
  c.stabilize();
  const l = c.peer("n1");
  const s = l.node.status();
  l.storage.createSnapshot(s.applied, s.conf, utf8("state"));
  l.storage.compact(s.applied);
  c.heal();
  c.tickAll(5);
  assertEquals(c.peer("n4").storage.snapshot().meta.conf, {
    voters: ["n1", "n2", "n3"],
    learners: ["n4"],
  });
  assertEquals(c.node("n4").status().conf.learners, ["n4"]);
  assertEquals(c.node("n4").status().commit, s.commit);
});

Deno.test("thesis §3.10 leadership transfer: catch the target up, then TimeoutNow", () => {
  let timeoutNow = 0;
  const c = new TestCluster(["n1", "n2", "n3"], {
    onReady: (_id, rd) => {
      timeoutNow += rd.messages.filter((m) => m.type === MessageType.TimeoutNow).length;
    },
  });
  c.elect("n1");
  c.isolate("n3");
  for (let i = 0; i < 5; i++) c.node("n1").propose(utf8(`e${i}`));
  c.stabilize();
  c.heal();
  c.node("n1").transferLeader("n3");
  assertEquals(c.node("n1").propose(utf8("during")).ok, false, "proposals wait during a transfer");
  c.stabilize();
  assertEquals(timeoutNow, 1);
  assertEquals(c.leaders(), ["n3"]);
  assertEquals(c.node("n3").status().term, 2);
  assertTrue(c.node("n3").propose(utf8("after")).ok);
  c.stabilize();
  assertEquals(c.peer("n1").applied.at(-1)?.data, utf8("after"));
});

Deno.test("thesis §3.10 a follower forwards a transfer request; a timed-out transfer is abandoned", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  c.node("n2").transferLeader("n2");
  c.stabilize();
  assertEquals(c.leaders(), ["n2"]);
  // Transfer to an unreachable node: abandoned after an election timeout.
  c.isolate("n3");
  c.node("n2").transferLeader("n3");
  c.stabilize();
  assertEquals(c.node("n2").status().leadTransferee, "n3");
  c.tick("n2", 20);
  assertEquals(c.node("n2").status().leadTransferee, "");
  assertTrue(c.node("n2").propose(utf8("ok again")).ok);
});

Deno.test("a learner ahead in term gets a stale leader to a newer term (no PreVote, no CheckQuorum)", () => {
  // A voter that campaigned and was then demoted keeps its higher term, and a learner
  // never campaigns: unless it answers the leader, it never hears from it again.
  const c = new TestCluster(["n1", "n2"], {}, ["n3"]);
  c.elect("n1");
  assertEquals(c.leaders(), ["n1"]);
  c.node("n3").step(
    newMessage({ type: MessageType.Heartbeat, groupId: 1, from: "n2", to: "n3", term: 5 }),
  );
  assertEquals(c.node("n3").status().term, 5);
  c.tick("n1", 1); // a heartbeat at term 1; n3 answers with its term
  c.stabilize();
  assertTrue(c.node("n1").status().term >= 5, "the old leader learned the newer term");
  for (let i = 0; i < 50 && c.leaders().length === 0; i++) {
    c.tickAll();
    c.stabilize();
  }
  const leader = c.leaders()[0];
  assertTrue(c.node(leader).propose(new Uint8Array([1])).ok);
  c.stabilize();
  assertEquals(c.node("n3").status().commit, c.node(leader).status().commit, "n3 follows again");
});

Deno.test("thesis §4.1 a new leader applying an old change still refuses a new one while a later change is unapplied", () => {
  const c = new TestCluster(["a", "b", "c"]);
  c.elect("a");
  c.addPeer("d");
  c.addPeer("e");
  assertTrue(c.node("a").proposeMembershipChange({ type: "addLearner", nodeId: "d" }).ok);
  c.stabilize();
  for (let i = 0; i < 3; i++) c.node("a").propose(new Uint8Array([i]));
  c.stabilize();
  assertTrue(c.node("a").proposeMembershipChange({ type: "addLearner", nodeId: "e" }).ok);
  c.stabilize();
  // b restarts with an older commit index (a commit-only hard state is written without fsync)
  // and applies one entry per Ready, so it leads while the second change is still unapplied.
  const old = c.peer("b");
  old.storage.setHardState({ ...old.storage.hardState(), commit: 1 });
  c.queue = c.queue.filter((m) => m.to !== "b");
  const b = c.addPeer("b", old.storage, { maxApplyBytesPerReady: 1, applied: 0 });
  b.node.campaign();
  let checked = false;
  for (let round = 0; round < 200 && !checked; round++) {
    c.processAll();
    c.deliver();
    const st = b.node.status();
    if (st.role !== "leader" || st.applied < 2) continue;
    const unapplied = b.storage.entries(st.applied + 1, st.commit + 1)
      .filter((e) => e.type === EntryType.ConfChange);
    if (unapplied.length === 0) continue;
    const r = b.node.proposeMembershipChange({ type: "addLearner", nodeId: "f" });
    assertEquals(r, { ok: false, reason: "pendingConfChange", leaderId: "b" });
    checked = true;
  }
  assertTrue(checked, "b led with the second change committed but not applied");
  c.stabilize();
  assertEquals(b.node.status().conf.learners, ["d", "e"]);
  assertTrue(b.node.proposeMembershipChange({ type: "addLearner", nodeId: "f" }).ok);
});
