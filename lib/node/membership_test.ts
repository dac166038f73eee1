import { assertEquals, assertRejects } from "../common/test_helpers.ts";
import { ManualClock } from "../common/clock.ts";
import { KVError } from "../common/errors.ts";
import type { ConfChange } from "../raft/types.ts";
import { Logger } from "./logger.ts";
import { MembershipManager } from "./membership.ts";
import type { Replica } from "./replica.ts";
import type { MemberRecord } from "./state_machine.ts";
import type { PeerHealth } from "../cluster/failure_detector.ts";

/**
 * A leader whose Raft core still counts an earlier change as pending for the
 * first `busyFor` proposals (the window between the state machine applying a
 * change and the core being told it was applied, or a change a new leader
 * inherited), then accepts.
 */
function leaderWithPendingChange(busyFor: number) {
  const members = new Map<string, MemberRecord>([
    ["n1", { id: "n1", addr: "127.0.0.1:1", learner: false }],
    ["n2", { id: "n2", addr: "127.0.0.1:2", learner: false }],
    ["n3", { id: "n3", addr: "127.0.0.1:3", learner: false }],
  ]);
  const proposed: ConfChange[] = [];
  let refusals = 0;
  const replica = {
    members,
    isLeader: true,
    proposeConfChange(change: ConfChange) {
      if (refusals < busyFor) {
        refusals++;
        return Promise.reject(
          new KVError("Conflict", "another membership change is in progress"),
        );
      }
      proposed.push(change);
      if (change.type === "removeNode") members.delete(change.nodeId);
      return Promise.resolve({});
    },
  };
  return { replica: replica as unknown as Replica, proposed, refusals: () => refusals };
}

/** The membership manager of node n1 of cluster c1, on `replica`, with logs discarded. */
function managerOn(replica: Replica, clock: ManualClock): MembershipManager {
  return new MembershipManager(
    "n1",
    () => "c1",
    replica,
    clock,
    new Logger("n1", "error", () => {}),
  );
}

/** Advances the manual clock in small steps until `p` settles or `limitMs` passes. */
async function settle<T>(clock: ManualClock, p: Promise<T>, limitMs: number): Promise<T> {
  let done = false;
  p.then(() => (done = true), () => (done = true));
  for (let waited = 0; !done && waited <= limitMs; waited += 5) {
    await new Promise((r) => setTimeout(r, 0));
    clock.advance(5);
  }
  return p;
}

Deno.test("membership: an operator's removal waits for a pending change instead of failing", async () => {
  const clock = new ManualClock();
  const leader = leaderWithPendingChange(3);
  const manager = managerOn(leader.replica, clock);
  const result = await settle(clock, manager.remove("n3", clock.nowMs() + 1_000), 1_000);
  assertEquals(leader.refusals(), 3);
  assertEquals(leader.proposed.map((c) => `${c.type}:${c.nodeId}`), ["removeNode:n3"]);
  assertEquals(result.members.map((m) => m.id), ["n1", "n2"]);
});

Deno.test("membership: a change still pending at the deadline fails with the reason", async () => {
  const clock = new ManualClock();
  const leader = leaderWithPendingChange(Number.MAX_SAFE_INTEGER);
  const manager = managerOn(leader.replica, clock);
  await assertRejects(
    () => settle(clock, manager.remove("n3", clock.nowMs() + 200), 1_000),
    KVError,
    "another membership change is in progress",
  );
  assertEquals(leader.proposed.length, 0);
});

Deno.test("membership: a retried join whose first attempt's change applies meanwhile succeeds without a second change", async () => {
  const clock = new ManualClock();
  const leader = leaderWithPendingChange(2);
  const members = leader.replica.members as Map<string, MemberRecord>;
  const propose = leader.replica.proposeConfChange.bind(leader.replica);
  let refused = 0;
  // The first attempt's addLearner (which timed out on the joining node) is the pending
  // change; it applies while the retry waits.
  leader.replica.proposeConfChange = (change, deadline) =>
    propose(change, deadline).finally(() => {
      if (++refused === 2) members.set("n4", { id: "n4", addr: "127.0.0.1:4", learner: true });
    });
  const manager = managerOn(leader.replica, clock);
  const result = await settle(
    clock,
    manager.join("n4", "127.0.0.1:4", "c1", clock.nowMs() + 1_000),
    1_000,
  );
  assertEquals(leader.proposed.length, 0, "no second addLearner");
  assertEquals(result.members.map((m) => m.id).includes("n4"), true);
});

/** A leader n1 of voters n1..n3 and learner n4 whose progress and peer health a test sets. */
function leaderWithPeers(health: Record<string, PeerHealth>, match: Record<string, number>) {
  const leader = leaderWithPendingChange(0);
  const members = leader.replica.members as Map<string, MemberRecord>;
  members.set("n4", { id: "n4", addr: "127.0.0.1:4", learner: true });
  const transfers: string[] = [];
  const replica = leader.replica as unknown as Record<string, unknown>;
  replica.node = {
    status: () => ({
      leadTransferee: "",
      progress: Object.fromEntries(Object.entries(match).map(([id, m]) => [id, { match: m }])),
    }),
  };
  replica.transferLeader = (id: string) => transfers.push(id);
  replica.softState = { leaderId: "n1" };
  const clock = new ManualClock();
  const manager = new MembershipManager(
    "n1",
    () => "c1",
    leader.replica,
    clock,
    new Logger("n1", "error", () => {}),
    (id) => health[id] ?? "healthy",
  );
  return { manager, proposed: leader.proposed, transfers, clock };
}

Deno.test("membership: a voter or a learner that held the log asking to join again is refused (its data is lost)", async () => {
  const { manager, proposed } = leaderWithPeers({}, { n2: 40, n4: 0 });
  await assertRejects(
    () => manager.join("n2", "127.0.0.1:2", "c1", Date.now() + 1_000),
    KVError,
    "already a voter of this cluster and asks to join with an empty data dir",
  );
  // A learner the leader never reached may be a joiner that crashed mid-join: it may retry.
  const retried = await manager.join("n4", "127.0.0.1:4", "c1", Date.now() + 1_000);
  assertEquals(retried.members.map((m) => m.id), ["n1", "n2", "n3", "n4"]);
  const { manager: later } = leaderWithPeers({}, { n4: 12 });
  await assertRejects(
    () => later.join("n4", "127.0.0.1:4", "c1", Date.now() + 1_000),
    KVError,
    "learner that has received the log",
  );
  assertEquals(proposed, []);
});

Deno.test("membership: removing a voter is refused when the voters left that answer are no quorum", async () => {
  const { manager, proposed } = leaderWithPeers({ n2: "down" }, {});
  await assertRejects(
    () => manager.remove("n3", Date.now() + 1_000),
    KVError,
    "would leave 2 voters of which 1 answer the leader (n2 not), fewer than the 2 a quorum needs",
  );
  // Removing the voter that is down, or a learner, keeps a quorum that answers.
  await manager.remove("n2", Date.now() + 1_000);
  await manager.remove("n4", Date.now() + 1_000);
  assertEquals(proposed.map((c) => `${c.type}:${c.nodeId}`), ["removeNode:n2", "removeNode:n4"]);
});

Deno.test("membership: a leader removing itself hands leadership to a healthy voter, not the most caught-up one", async () => {
  const { manager, transfers, clock } = leaderWithPeers({ n2: "suspect" }, { n2: 90, n3: 80 });
  await assertRejects(
    () => settle(clock, manager.remove("n1", clock.nowMs() + 30), 100),
    KVError,
    "did not move",
  );
  assertEquals([...new Set(transfers)], ["n3"]);
});
