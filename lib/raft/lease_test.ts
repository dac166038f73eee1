// What a leader's read lease relies on in the core (RaftConfig.leaseReads): voters that
// stay quiet after starting, and a lease epoch that changes whenever a lease may end.
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { TestCluster } from "./testing.ts";
import { MessageType, newMessage } from "./types.ts";

const opts = { checkQuorum: true, preVote: true, leaseReads: true, electionTicks: 10 };

/** A Vote for term 9 from `from` to `to`, with a log far ahead (it would be granted on merit). */
function vote(from: string, to: string) {
  return newMessage({
    type: MessageType.Vote,
    groupId: 1,
    from,
    to,
    term: 9,
    index: 100,
    logTerm: 9,
  });
}

Deno.test("lease reads: a voter ignores votes for one election timeout after it starts", () => {
  const c = new TestCluster(["n1", "n2", "n3"], opts);
  // Just started: n2 may have acknowledged a leader's round before it went down.
  c.node("n2").step(vote("n3", "n2"));
  assertEquals(c.node("n2").status().term, 0, "ignored while quiet");
  assertTrue(!c.node("n2").hasReady(), "no answer at all");
  c.tick("n2", opts.electionTicks - 1);
  c.node("n2").step(vote("n3", "n2"));
  assertEquals(c.node("n2").status().term, 0, "still quiet one tick before the timeout");
  c.tick("n2", 1);
  c.node("n2").step(vote("n3", "n2"));
  assertEquals(c.node("n2").status().term, 9, "heard after one election timeout");
  assertEquals(c.node("n2").status().vote, "n3");
});

Deno.test("lease reads: without them a restarted voter answers votes at once", () => {
  const c = new TestCluster(["n1", "n2", "n3"], { ...opts, leaseReads: false });
  c.node("n2").step(vote("n3", "n2"));
  assertEquals(c.node("n2").status().term, 9);
});

Deno.test("lease reads: a voter whose previous run promised longer stays quiet that long, lease reads or not", () => {
  for (const leaseReads of [true, false]) {
    const c = new TestCluster(["n1", "n2", "n3"], { ...opts, leaseReads, startQuietTicks: 25 });
    c.tick("n2", 24);
    c.node("n2").step(vote("n3", "n2"));
    assertEquals(c.node("n2").status().term, 0, `leaseReads ${leaseReads}: quiet for 25 ticks`);
    c.tick("n2", 1);
    c.node("n2").step(vote("n3", "n2"));
    assertEquals(c.node("n2").status().term, 9, `leaseReads ${leaseReads}: then heard`);
  }
});

Deno.test("lease reads: a cluster still elects a leader once its voters' quiet time is over", () => {
  const c = new TestCluster(["n1", "n2", "n3"], opts);
  c.elect("n1");
  assertEquals(c.leaders(), [], "nobody answers a campaign during the quiet time");
  for (let i = 0; i < 40 && c.leaders().length === 0; i++) {
    c.tickAll();
    c.stabilize();
  }
  assertEquals(c.leaders().length, 1);
  const leader = c.leaders()[0];
  // A restart of a follower makes it quiet again, and the leader keeps leading.
  const follower = ["n1", "n2", "n3"].find((id) => id !== leader)!;
  c.restart(follower);
  const term = c.node(follower).status().term;
  assertTrue(term > 0 && term < 9);
  c.node(follower).step(vote("x", follower));
  assertEquals(c.node(follower).status().term, term, "the restarted voter ignores the vote");
});

Deno.test("lease reads: the lease epoch changes on a transfer, a membership change and a new term", () => {
  const c = new TestCluster(["n1", "n2", "n3"], opts);
  c.tickAll(opts.electionTicks);
  c.elect("n1");
  for (let i = 0; i < 40 && c.leaders().length === 0; i++) {
    c.tickAll();
    c.stabilize();
  }
  const leader = c.leaders()[0];
  const n = c.node(leader);
  c.stabilize();
  assertEquals(n.leaseReadIndex(), n.status().commit, "a leader with its term committed");
  const follower = ["n1", "n2", "n3"].find((id) => id !== leader)!;
  assertEquals(c.node(follower).leaseReadIndex(), -1, "a follower never serves from a lease");

  let epoch = n.leaseEpoch;
  assertTrue(n.proposeMembershipChange({ type: "addLearner", nodeId: "n4" }).ok);
  c.stabilize();
  assertTrue(n.leaseEpoch > epoch, "applying a membership change ends the lease");

  epoch = n.leaseEpoch;
  c.isolate(follower); // the transfer cannot finish: the target never answers
  n.transferLeader(follower);
  assertTrue(n.leaseEpoch > epoch, "starting a transfer ends the lease");
  assertEquals(n.leaseReadIndex(), -1, "no lease reads while a transfer is under way");
  epoch = n.leaseEpoch;
  c.heal();
  for (let i = 0; i < 10 && c.leaders()[0] !== follower; i++) {
    c.tick(leader);
    c.stabilize();
  }
  assertEquals(c.leaders(), [follower], "the transfer finished once its target was back");
  assertTrue(n.leaseEpoch > epoch, "stepping down (a new term) is a new epoch");
  assertEquals(n.leaseReadIndex(), -1);
});

Deno.test("lease reads: a leader whose lease holds answers a follower's ReadIndex at once", () => {
  const c = new TestCluster(["n1", "n2", "n3"], opts);
  c.tickAll(opts.electionTicks);
  for (let i = 0; i < 40 && c.leaders().length === 0; i++) {
    c.tickAll();
    c.stabilize();
  }
  const leader = c.leaders()[0];
  const follower = ["n1", "n2", "n3"].find((id) => id !== leader)!;
  c.stabilize();
  const n = c.node(leader);
  const request = (ctx: string) =>
    newMessage({
      type: MessageType.ReadIndex,
      groupId: 1,
      from: follower,
      to: leader,
      context: new TextEncoder().encode(ctx),
    });
  /** Messages of `type` the leader sent since the last call (they stay queued for delivery). */
  let seen = 0;
  const sent = (type: MessageType) => {
    c.processReady(leader);
    const fresh = c.queue.slice(seen);
    seen = c.queue.length;
    return fresh.filter((m) => m.from === leader && m.type === type);
  };
  seen = c.queue.length;
  n.stepLeased(request("a"), true);
  const answers = sent(MessageType.ReadIndexResponse);
  assertEquals(answers.map((m) => [m.to, m.index]), [[follower, n.status().commit]]);
  assertEquals(sent(MessageType.Heartbeat), [], "no heartbeat round");

  n.stepLeased(request("b"), false);
  const round = sent(MessageType.Heartbeat);
  assertTrue(
    round.length === 2 && round.every((m) => (m.context?.length ?? 0) > 0),
    "without the lease it confirms with a heartbeat round",
  );
  c.stabilize();
  assertEquals(c.peer(follower).reads.map((r) => r.context), ["a", "b"], "both answered");

  c.isolate(follower);
  n.transferLeader(follower);
  seen = c.queue.length;
  n.stepLeased(request("c"), true);
  assertEquals(sent(MessageType.ReadIndexResponse), [], "no lease answers during a transfer");
});

Deno.test("lease reads: after a transfer times out, no lease read until the next term (a late TimeoutNow)", () => {
  const c = new TestCluster(["n1", "n2", "n3"], { ...opts, heartbeatTicks: 3 });
  c.tickAll(opts.electionTicks); // past the quiet period after start
  c.elect("n1");
  const leader = c.node("n1");
  leader.propose(new Uint8Array([1]));
  c.stabilize();
  assertTrue(leader.leaseReadIndex() >= 0, "a steady leader may read from its lease");
  // The transferee is paused: its TimeoutNow waits in its socket.
  leader.transferLeader("n2");
  c.processReady("n1");
  const held = c.queue.filter((m) => m.type === MessageType.TimeoutNow);
  assertEquals(held.length, 1);
  c.queue = c.queue.filter((m) => m.type !== MessageType.TimeoutNow);
  c.partition(["n2"], ["n1", "n3"]);
  for (let i = 0; i < opts.electionTicks; i++) {
    c.tick("n1");
    c.tick("n3");
    c.stabilize();
  }
  assertEquals(leader.status().leadTransferee, "", "the transfer timed out");
  assertEquals(leader.status().role, "leader");
  assertEquals(leader.leaseReadIndex(), -1, "the TimeoutNow may still start an election");
  // Nor is a follower's forwarded read answered from the lease.
  leader.stepLeased(
    newMessage({
      type: MessageType.ReadIndex,
      groupId: 1,
      from: "n3",
      to: "n1",
      context: new Uint8Array([7]),
    }),
    true,
  );
  assertEquals(
    c.processReady("n1")!.messages.filter((m) => m.type === MessageType.ReadIndexResponse),
    [],
    "a forwarded read answered without a heartbeat round",
  );
  // It does: n2 resumes and wins a term that ignored every lease.
  c.heal();
  c.isolate("n1");
  for (const m of held) c.node("n2").step(m);
  c.stabilize();
  assertEquals(c.node("n2").status().role, "leader");
  assertEquals(leader.leaseReadIndex(), -1);
});

Deno.test("lease reads: a higher term learned from a rejection does not end a voter's quiet period", () => {
  const c = new TestCluster(["n1", "n2", "n3"], { ...opts, heartbeatTicks: 2 });
  c.tickAll(opts.electionTicks); // past the quiet period after start
  c.elect("n1");
  c.node("n1").propose(new Uint8Array([1]));
  c.stabilize(); // n3 has just heard from n1 (it may have acknowledged a lease round)
  const term = c.node("n3").status().term;
  // A late rejection from n2, sent in a higher term, moves n3 there with no leader.
  c.node("n3").step(newMessage({
    type: MessageType.PreVoteResponse,
    groupId: 1,
    from: "n2",
    to: "n3",
    term: term + 1,
    reject: true,
  }));
  assertEquals(c.node("n3").status().term, term + 1);
  // A vote n3 would grant on its merits: still ignored while n1's lease may hold.
  const ask = newMessage({
    type: MessageType.Vote,
    groupId: 1,
    from: "n2",
    to: "n3",
    term: term + 2,
    index: 100,
    logTerm: term + 2,
  });
  c.node("n3").step(ask);
  assertEquals(c.node("n3").status().term, term + 1, "ignored within one election timeout");
  c.tick("n3", opts.electionTicks);
  c.node("n3").step(ask);
  assertEquals(c.node("n3").status().term, term + 2, "heard after it");
  assertEquals(c.node("n3").status().vote, "n2");
});
