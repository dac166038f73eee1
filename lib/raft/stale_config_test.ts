// A voter of a newer configuration at a lower term must be able to reach the term of a
// stale voter whose vote it needs (paper §5.1; thesis §4.2.3 / §9.6 cover the opposite,
// disruptive direction). Found by the simulator: SEED=695499717 deno task test:sim --nodes 3.
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { TestCluster } from "./testing.ts";

/**
 * n2 misses n4's promotion and n3's demotion and campaigns far ahead in term; then n1
 * goes down. The only quorum of [n1,n2,n4] left is n2 + n4. n2 campaigns among its own
 * voters [n1,n2,n3] and never writes to n4 (a learner to it); n4 campaigns among
 * [n1,n2,n4] at a lower term.
 */
function staleVoterAhead(): TestCluster {
  const c = new TestCluster(["n1", "n2", "n3"], { checkQuorum: true, seed: 7 });
  c.elect("n1");
  c.addPeer("n4");
  assertTrue(c.node("n1").proposeMembershipChange({ type: "addLearner", nodeId: "n4" }).ok);
  c.stabilize();
  c.isolate("n2");
  assertTrue(c.node("n1").proposeMembershipChange({ type: "addVoter", nodeId: "n4" }).ok);
  c.stabilize();
  assertTrue(c.node("n1").proposeMembershipChange({ type: "addLearner", nodeId: "n3" }).ok);
  c.stabilize();
  assertEquals(c.node("n4").status().conf, { voters: ["n1", "n2", "n4"], learners: ["n3"] });
  assertEquals(c.node("n2").status().conf, { voters: ["n1", "n2", "n3"], learners: ["n4"] });
  // n2, cut off, campaigns again and again.
  for (let i = 0; i < 400; i++) {
    c.tick("n2");
    c.stabilize();
  }
  assertTrue(c.node("n2").status().term >= 15, `n2 at term ${c.node("n2").status().term}`);
  // n1 goes down for good; everything else heals.
  c.peers.delete("n1");
  c.heal();
  return c;
}

Deno.test("a stale voter ahead in term answers a lower-term Vote with its term (§5.1)", () => {
  const c = staleVoterAhead();
  const t2 = c.node("n2").status().term;
  c.node("n4").campaign(); // a real election at term 2: n2 ignored it, so n4 never learned t2
  c.stabilize();
  assertEquals(c.node("n4").status().term, t2, "n4 learned n2's term from the rejection");
});

Deno.test("a voter of the newer configuration gets elected although a stale voter runs ahead in term", () => {
  const c = staleVoterAhead();
  let leader = "";
  for (let i = 0; i < 300 && leader === ""; i++) {
    for (const id of ["n2", "n3", "n4"]) c.tick(id);
    c.stabilize();
    leader = c.leaders()[0] ?? "";
  }
  assertEquals(
    leader,
    "n4",
    `no leader after 300 ticks: n2 ${JSON.stringify(c.node("n2").status().term)} ${
      c.node("n2").status().role
    }, n4 ${c.node("n4").status().term} ${c.node("n4").status().role}`,
  );
  assertTrue(c.node("n4").propose(new Uint8Array([1])).ok);
  c.stabilize();
  assertEquals(c.node("n2").status().commit, c.node("n4").status().commit, "n2 caught up");
  assertEquals(c.node("n2").status().conf, { voters: ["n1", "n2", "n4"], learners: ["n3"] });
});
