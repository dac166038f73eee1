// Leader election (§5.2, §5.4.1), PreVote (thesis §9.6) and CheckQuorum (thesis §6.2).
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { storageWith, TestCluster } from "./testing.ts";
import { MessageType, newMessage } from "./types.ts";

Deno.test("§5.2 a single voter elects itself and commits its no-op", () => {
  const c = new TestCluster(["n1"]);
  c.elect("n1");
  const s = c.node("n1").status();
  assertEquals(s.role, "leader");
  assertEquals(s.term, 1);
  assertEquals(c.peer("n1").applied.map((e) => [e.term, e.index, e.data.length]), [[1, 1, 0]]);
});

Deno.test("§5.2 three nodes elect exactly one leader and all know it", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  assertEquals(c.leaders(), ["n1"]);
  for (const id of ["n2", "n3"]) {
    assertEquals(c.node(id).status().leaderId, "n1");
    assertEquals(c.node(id).status().term, 1);
  }
});

Deno.test("§5.2 the election timeout is randomized in [electionTicks, 2 x electionTicks)", () => {
  const seen = new Set<number>();
  for (let seed = 1; seed <= 60; seed++) {
    const c = new TestCluster(["n1", "n2", "n3"], { seed, electionTicks: 10 });
    let ticks = 0;
    while (c.node("n1").status().role === "follower") {
      c.tick("n1");
      ticks++;
      assertTrue(ticks < 20, "campaigned within 2 x electionTicks");
    }
    assertTrue(ticks >= 10, `campaigned after ${ticks} ticks, before electionTicks`);
    seen.add(ticks);
  }
  assertTrue(seen.size >= 5, "timeouts are spread out");
});

Deno.test("§5.2 a node grants one vote per term, and only after persisting it", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  const n3 = c.node("n3");
  const vote = (from: string) =>
    newMessage({
      type: MessageType.Vote,
      groupId: 1,
      from,
      to: "n3",
      term: 1,
      index: 0,
      logTerm: 0,
    });
  n3.step(vote("n1"));
  const rd = n3.ready();
  assertEquals(rd.messages.length, 0, "a vote is never sent before it is durable");
  assertEquals(rd.persistedMessages.map((m) => [m.to, m.reject]), [["n1", false]]);
  assertEquals(rd.hardState, { term: 1, vote: "n1", commit: 0 });
  assertTrue(rd.mustSync);
  n3.advance(rd);
  n3.step(vote("n2"));
  const rd2 = n3.ready();
  assertEquals(rd2.persistedMessages.map((m) => [m.to, m.reject]), [["n2", true]]);
  n3.advance(rd2);
  // The same candidate asking again (a retry) gets the same answer.
  n3.step(vote("n1"));
  const rd3 = n3.ready();
  assertEquals(rd3.persistedMessages.map((m) => [m.to, m.reject]), [["n1", false]]);
});

Deno.test("§5.2 a candidate counts its own vote only once it is durable", () => {
  const c = new TestCluster(["n1"]);
  c.node("n1").campaign();
  assertEquals(c.node("n1").status().role, "candidate");
  const rd = c.processReady("n1")!;
  assertEquals(rd.hardState?.vote, "n1");
  // advance() delivered the self vote: now it wins.
  assertEquals(c.node("n1").status().role, "leader");
});

Deno.test("§5.2 dueling candidates: split votes resolve, never two leaders in a term", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const c = new TestCluster(["n1", "n2", "n3"], { seed });
    for (const id of ["n1", "n2", "n3"]) c.node(id).campaign();
    c.stabilize();
    assertEquals(c.leaders(), [], "everyone voted for itself: nobody wins term 1");
    const leaderOfTerm = new Map<number, string>();
    for (let t = 0; t < 200 && c.leaders().length === 0; t++) {
      c.tickAll();
      for (const id of c.leaders()) {
        const term = c.node(id).status().term;
        assertTrue(!leaderOfTerm.has(term) || leaderOfTerm.get(term) === id, "one leader per term");
        leaderOfTerm.set(term, id);
      }
    }
    assertEquals(c.leaders().length, 1, `seed ${seed}: a leader emerges`);
  }
});

Deno.test("§5.2 dueling candidates with a cut link: the one the middle node saw first wins", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.partition(["n1"], ["n3"]);
  c.node("n1").campaign();
  c.node("n3").campaign();
  c.stabilize();
  assertEquals(c.leaders(), ["n1"]);
  assertEquals(c.node("n3").status().role, "candidate");
  c.heal();
  // n3's log lacks n1's no-op, so when it times out it cannot win; the cluster recovers.
  c.tickAll(60);
  const leaders = c.leaders();
  assertEquals(leaders.length, 1);
  assertTrue(leaders[0] !== "n3" || c.node("n3").status().term > 1);
  const res = c.node(leaders[0]).propose(new Uint8Array([7]));
  assertTrue(res.ok);
  c.stabilize();
  for (const id of ["n1", "n2", "n3"]) {
    assertEquals(c.peer(id).applied.at(-1)?.data, new Uint8Array([7]));
  }
});

Deno.test("§5.4.1 a candidate whose log is behind is refused", () => {
  const c = new TestCluster([], {});
  const voters = ["n1", "n2", "n3"];
  c.addPeer("n1", storageWith(voters, [1, 1, 2]));
  c.addPeer("n2", storageWith(voters, [1, 1]));
  c.addPeer("n3", storageWith(voters, [1, 1, 2]));
  c.node("n2").campaign();
  c.stabilize();
  assertEquals(c.node("n2").status().role, "follower", "lost: both others have a newer last term");
  // Same last term but shorter log also loses.
  const d = new TestCluster([], {});
  d.addPeer("n1", storageWith(voters, [1, 2, 2]));
  d.addPeer("n2", storageWith(voters, [1, 2]));
  d.addPeer("n3", storageWith(voters, [1, 2, 2]));
  d.node("n2").campaign();
  d.stabilize();
  assertEquals(d.node("n2").status().role, "follower");
  d.node("n1").campaign();
  d.stabilize();
  assertEquals(d.leaders(), ["n1"]);
});

Deno.test("thesis §9.6 PreVote stops a disruptive rejoining follower", () => {
  for (const preVote of [true, false]) {
    const c = new TestCluster(["n1", "n2", "n3"], { preVote });
    c.elect("n1");
    c.isolate("n3");
    for (let i = 0; i < 3; i++) {
      assertTrue(c.node("n1").propose(new Uint8Array([i])).ok);
      c.stabilize();
    }
    // n3 times out again and again while cut off.
    for (let i = 0; i < 50; i++) {
      c.tick("n3");
      c.stabilize();
    }
    c.heal();
    c.tick("n3", 25);
    c.stabilize();
    if (preVote) {
      assertEquals(
        c.node("n3").status().term,
        1,
        "PreVote: the isolated node never raised its term",
      );
      assertEquals(c.leaders(), ["n1"], "the leader was not disrupted");
      assertEquals(c.node("n1").status().term, 1);
    } else {
      assertTrue(
        c.node("n1").status().term > 1,
        "without PreVote the rejoining node forces a new term",
      );
    }
  }
});

Deno.test("thesis §6.2 CheckQuorum: a leader that loses its quorum steps down", () => {
  const c = new TestCluster(["n1", "n2", "n3"], { checkQuorum: true });
  c.elect("n1");
  c.isolate("n1");
  // One election timeout to notice, one more for the check to run with stale marks.
  for (let i = 0; i < 21 && c.node("n1").status().role === "leader"; i++) {
    c.tick("n1");
    c.stabilize();
  }
  assertEquals(c.node("n1").status().role, "follower");
  assertEquals(c.node("n1").status().leaderId, "");
});

Deno.test("thesis §6.2 CheckQuorum: a follower that heard from its leader ignores vote requests", () => {
  const c = new TestCluster(["n1", "n2", "n3"], { checkQuorum: true });
  c.elect("n1");
  const n2 = c.node("n2");
  n2.step(
    newMessage({
      type: MessageType.Vote,
      groupId: 1,
      from: "n3",
      to: "n2",
      term: 5,
      index: 9,
      logTerm: 5,
    }),
  );
  assertEquals(n2.status().term, 1, "in lease: the higher term is ignored");
  assertTrue(!n2.hasReady());
});

Deno.test("messages of another group are ignored", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.node("n2").step(
    newMessage({ type: MessageType.Vote, groupId: 2, from: "n1", to: "n2", term: 3 }),
  );
  assertEquals(c.node("n2").status().term, 0);
  assertTrue(!c.node("n2").hasReady());
});
