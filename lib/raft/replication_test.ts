// Log replication (§5.3), the commit rule (§5.4.2, Figure 8), log compaction (§7)
// and the client-facing rules of §8 (no-op at term start).
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { storageWith, TestCluster } from "./testing.ts";
import { EntryType, MessageType } from "./types.ts";

const bytes = (...xs: number[]) => new Uint8Array(xs);

function logTerms(c: TestCluster, id: string): number[] {
  const s = c.node(id).status();
  const out: number[] = [];
  for (let i = s.firstIndex; i <= s.lastIndex; i++) out.push(c.node(id).logTerm(i) ?? -1);
  return out;
}

Deno.test("§5.3 proposals are replicated, committed and applied in order on every node", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  for (let i = 0; i < 10; i++) {
    const res = c.node("n1").propose(bytes(i));
    assertTrue(res.ok && res.term === 1 && res.index === i + 2);
  }
  c.stabilize();
  for (const id of ["n1", "n2", "n3"]) {
    const applied = c.peer(id).applied;
    assertEquals(applied.length, 11);
    assertEquals(applied.slice(1).map((e) => e.data[0]), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assertEquals(c.node(id).status().commit, 11);
  }
});

Deno.test("§5.3 a follower refuses proposals with the leader's id as a hint", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  assertEquals(c.node("n2").propose(bytes(1)), { ok: false, reason: "notLeader", leaderId: "n1" });
});

Deno.test("§5.3 a follower's conflicting suffix is overwritten by the leader's log", () => {
  const c = new TestCluster([]);
  const v = ["n1", "n2", "n3"];
  c.addPeer("n1", storageWith(v, [1, 2, 2], { commit: 1 }));
  c.addPeer("n2", storageWith(v, [1, 1, 1, 1], { term: 2, commit: 1 }));
  c.addPeer("n3", storageWith(v, [1, 2, 2], { commit: 1 }));
  c.elect("n1");
  assertEquals(c.leaders(), ["n1"]);
  assertEquals(logTerms(c, "n2"), [1, 2, 2, 3]);
  assertEquals(logTerms(c, "n1"), [1, 2, 2, 3]);
  assertEquals(c.node("n2").status().commit, 4);
});

Deno.test("§5.3 fast backtracking: a long divergent log is fixed in a couple of probes", () => {
  const c = new TestCluster([]);
  const v = ["n1", "n2", "n3"];
  const leaderLog = [1, ...new Array(100).fill(2)];
  const staleLog = [1, ...new Array(200).fill(1)];
  c.addPeer("n1", storageWith(v, leaderLog, { commit: 1 }));
  c.addPeer("n2", storageWith(v, staleLog, { term: 2, commit: 1 }));
  c.addPeer("n3", storageWith(v, leaderLog, { commit: 1 }));
  let rejects = 0;
  c.node("n1").campaign();
  for (let i = 0; i < 100; i++) {
    c.processAll();
    for (const m of c.deliver()) if (m.type === MessageType.AppendResponse && m.reject) rejects++;
    if (c.queue.length === 0 && !c.processAll()) break;
  }
  assertTrue(rejects <= 2, `${rejects} rejections`);
  assertEquals(logTerms(c, "n2"), logTerms(c, "n1"));
});

Deno.test("§5.3 batching: many proposals leave in one Ready and one Append per follower", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  for (let i = 0; i < 100; i++) assertTrue(c.node("n1").propose(bytes(i)).ok);
  const rd = c.processReady("n1")!;
  assertEquals(rd.entries.length, 100);
  const appends = rd.messages.filter((m) => m.type === MessageType.Append);
  assertEquals(appends.map((m) => [m.to, m.entries.length]), [["n2", 100], ["n3", 100]]);
  assertEquals(rd.persistedMessages, []);
  c.stabilize();
  assertEquals(c.node("n3").status().commit, 101);
});

Deno.test("§5.3 pipelining is bounded by the in-flight window and the byte cap", () => {
  const c = new TestCluster(["n1", "n2"], { maxInflight: 3, maxSizePerMsg: 1 });
  c.elect("n1");
  for (let i = 0; i < 10; i++) assertTrue(c.node("n1").propose(bytes(i)).ok);
  const rd = c.processReady("n1")!;
  const appends = rd.messages.filter((m) => m.type === MessageType.Append);
  assertEquals(appends.map((m) => m.entries.length), [1, 1, 1], "3 in flight, one entry each");
  c.stabilize();
  assertEquals(c.node("n2").status().commit, 11);
});

Deno.test("§5.3 a lost window is recovered through the heartbeat answer", () => {
  const c = new TestCluster(["n1", "n2"], { maxInflight: 2, maxSizePerMsg: 1 });
  c.elect("n1");
  for (let i = 0; i < 6; i++) c.node("n1").propose(bytes(i));
  c.processAll();
  c.queue = c.queue.filter((m) => m.type !== MessageType.Append); // the network loses them
  c.stabilize();
  assertEquals(c.node("n2").status().commit, 1);
  c.tickAll(3);
  assertEquals(c.node("n2").status().commit, 7);
});

Deno.test("§5.4.2 Figure 8: a leader does not commit an older-term entry by counting replicas", () => {
  const c = new TestCluster([], { maxSizePerMsg: 1 });
  const v = ["n1", "n2", "n3"];
  // n1 led term 2 and wrote 2/2 only locally before losing leadership.
  c.addPeer("n1", storageWith(v, [1, 2], { term: 2, commit: 1 }));
  c.addPeer("n2", storageWith(v, [1], { term: 2, commit: 1 }));
  c.addPeer("n3", storageWith(v, [1], { term: 2, commit: 1 }));
  c.node("n1").campaign();
  c.cut.add("n1>n3"); // n3 votes but receives no entries
  // n2 rejects the first probe (it lacks 2/2), receives 2/2, but the Append that
  // carries the term-3 no-op 3/3 after that is lost.
  let seen = 0;
  const noNoop = (m: { to: string; entries: { index: number }[] }) =>
    !(m.to === "n2" && m.entries.some((e) => e.index === 3) && ++seen > 1);
  for (let i = 0; i < 50; i++) {
    c.processAll();
    c.deliver(noNoop);
    c.queue = c.queue.filter(noNoop);
  }
  assertEquals(c.node("n1").status().role, "leader");
  assertEquals(c.node("n1").status().progress["n2"].match, 2, "2/2 is on a majority (n1, n2)");
  assertEquals(c.node("n1").status().commit, 1, "but it is from term 2: not committed by counting");
  // Once the term-3 entry reaches the majority, both commit together.
  c.tickAll(2);
  assertEquals(c.node("n1").status().commit, 3);
  assertEquals(c.peer("n1").applied.map((e) => `${e.term}/${e.index}`), ["1/1", "2/2", "3/3"]);
});

Deno.test("§8 a new leader appends a no-op of its term and commits it", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  const first = c.peer("n2").applied[0];
  assertEquals([first.term, first.index, first.type, first.data.length], [
    1,
    1,
    EntryType.Normal,
    0,
  ]);
  c.isolate("n1");
  c.elect("n2");
  const last = c.peer("n3").applied.at(-1)!;
  assertEquals([last.term, last.index, last.data.length], [2, 2, 0]);
});

Deno.test("§7 a follower too far behind gets a snapshot, then entries", () => {
  let snapshots = 0;
  const c = new TestCluster(["n1", "n2", "n3"], {
    onReady: (_id, rd) => {
      snapshots += rd.messages.filter((m) => m.type === MessageType.Snapshot).length;
    },
  });
  c.elect("n1");
  c.isolate("n3");
  for (let i = 0; i < 20; i++) c.node("n1").propose(bytes(i));
  c.stabilize();
  const leader = c.peer("n1");
  const applied = leader.node.status().applied;
  leader.storage.createSnapshot(applied, leader.node.status().conf, bytes(0xaa, applied));
  leader.storage.compact(applied);
  assertEquals(leader.node.status().firstIndex, applied + 1);
  c.node("n1").propose(bytes(99));
  c.heal();
  c.tickAll(50);
  assertEquals(snapshots, 1);
  const n3 = c.peer("n3");
  assertEquals(n3.storage.snapshot().meta.index, applied);
  assertEquals(n3.storage.snapshot().data, bytes(0xaa, applied));
  assertEquals(n3.node.status().commit, c.node("n1").status().commit);
  assertEquals(n3.applied.at(-1)?.data, bytes(99));
});

Deno.test("§5.3 a restarted follower keeps its log and catches up", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  c.node("n1").propose(bytes(1));
  c.stabilize();
  c.restart("n3");
  assertEquals(c.node("n3").status().commit, 2, "commit was persisted");
  c.isolate("n3");
  for (let i = 0; i < 5; i++) c.node("n1").propose(bytes(i));
  c.stabilize();
  c.heal();
  c.tickAll(3);
  assertEquals(c.node("n3").status().commit, 7);
});

Deno.test("the leader stamps each client entry as it appends it, its own and relayed ones", () => {
  const stampedBy: string[] = [];
  const c = new TestCluster(["n1", "n2", "n3"], {
    stampProposal: (id, data) => {
      stampedBy.push(id);
      const stamped = data.slice();
      stamped[0] = 0xee; // what the driver returns is what the log holds
      return stamped;
    },
  });
  c.elect("n1");
  const mine = new Uint8Array([1, 2]);
  assertTrue(c.node("n1").propose(mine).ok);
  c.node("n2").proposeAnywhere(new Uint8Array([3, 4])); // relayed to the leader
  c.stabilize();
  assertEquals(stampedBy, ["n1", "n1"], "only the leader, once per entry");
  for (const id of ["n1", "n2", "n3"]) {
    const data = c.peer(id).applied.filter((e) => e.data.length === 2).map((e) => [...e.data]);
    assertEquals(data, [[0xee, 2], [0xee, 4]], id);
  }
  assertEquals([...mine], [1, 2], "the proposer's bytes are left as they were");
});
