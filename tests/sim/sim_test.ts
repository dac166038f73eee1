// The seeded cluster simulator in CI: many random fault schedules, plus the
// seed's named scenarios. A failure prints its seed; `SEED=<n> deno task test:sim`
// replays it (add TRACE=1 for the event trace).
import { fromUtf8 } from "../../lib/common/bytes.ts";
import { SeededRandom } from "../../lib/common/random.ts";
import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import { Cluster, type ClusterOptions } from "./cluster.ts";
import { runSeed, stepsPerTick } from "./simulate.ts";

const ciSeeds = 500;
const quiet: ClusterOptions = {
  preVote: true,
  checkQuorum: true,
  compactEvery: 0,
  compactKeep: 0,
  midReadyCrashRate: 0,
};

function runTicks(c: Cluster, ticks: number): void {
  for (let t = 0; t < ticks; t++) for (let s = 0; s < stepsPerTick; s++) c.step(stepsPerTick);
}

/** Runs until some node leads and every live voter follows it; returns its id. */
function settle(c: Cluster, maxTicks = 300): string {
  for (let t = 0; t < maxTicks; t++) {
    const l = c.leaders()[0];
    if (l?.raft) {
      const s = l.raft.status();
      const all = c.liveIds().every((id) => {
        const ns = c.nodes.get(id)!.raft!.status();
        return !s.conf.voters.includes(id) || (ns.term === s.term && ns.leaderId === l.id);
      });
      if (all) return l.id;
    }
    runTicks(c, 1);
  }
  throw new Error("no stable leader");
}

Deno.test(`sim: ${ciSeeds} random seeds x 3 and 5 nodes keep every invariant`, () => {
  const env = Deno.env.get("SEED");
  const seeds = env ? [Number(env)] : Array.from({ length: ciSeeds }, (_, i) => i + 1);
  const failures: string[] = [];
  let committed = 0;
  let checks = 0;
  for (const seed of seeds) {
    for (const nodes of [3, 5] as const) {
      const r = runSeed({ seed, nodes });
      committed += r.stats.committed;
      checks += r.stats.checks;
      if (!r.ok) {
        failures.push(
          `seed ${seed}, ${nodes} nodes (${r.config}): ${r.error?.split("\n")[0]}\n` +
            `  replay: SEED=${seed} deno task test:sim --nodes ${nodes}`,
        );
      }
    }
  }
  assertTrue(failures.length === 0, `simulation failures:\n${failures.join("\n")}`);
  assertTrue(
    committed > seeds.length * 100,
    `the runs did real work (${committed} entries, ${checks} checks)`,
  );
});

/**
 * Over 30 seeds: a leader takes its lease, then it and `cutWith` of its
 * followers (0 or 1) are cut off from the rest. Every step, the node chosen by
 * `reader` reads k (a stale answer fails the run: the simulator checks every
 * read) and the majority's leader, once there is one, writes k. Returns the
 * reads answered from a lease and the writes acknowledged after the cut.
 */
function cutOffLeaderScenario(nodes: 3 | 5, cutWith: number, reader: "leader" | "follower") {
  let leaseReads = 0;
  let newLeaderWrites = 0;
  for (let seed = 1; seed <= 30; seed++) {
    const c = new Cluster(new SeededRandom(seed), nodes, { ...quiet, leaseReads: true });
    c.net.faults = { dropRate: 0, duplicateRate: 0, minDelay: 1, maxDelay: 2 };
    const old = settle(c);
    const minority = [old, ...c.liveIds().filter((id) => id !== old).slice(0, cutWith)];
    const majority = c.liveIds().filter((id) => !minority.includes(id));
    const readAt = reader === "leader" ? old : minority[1];
    assertTrue(c.write(old, "k"));
    runTicks(c, 2);
    assertTrue(c.read(old, "k"));
    runTicks(c, 1); // the read's round gives the leader its lease
    const before = c.stats.leaseReads;
    const acked = c.stats.writesAcked;
    c.net.partition(minority, majority);
    for (let step = 0; step < 60 * stepsPerTick; step++) {
      c.read(readAt, "k");
      const fresh = c.leaders().find((n) => majority.includes(n.id));
      if (fresh) c.write(fresh.id, "k");
      c.step(stepsPerTick);
    }
    leaseReads += c.stats.leaseReads - before;
    newLeaderWrites += c.stats.writesAcked - acked;
  }
  return { leaseReads, newLeaderWrites };
}

Deno.test("sim: a cut-off leader serves lease reads only until another leader could exist", () => {
  const r = cutOffLeaderScenario(3, 0, "leader");
  assertTrue(r.leaseReads > 0, "the old leader served reads from its lease after the cut");
  assertTrue(r.newLeaderWrites > 0, "the majority elected a leader and wrote k");
});

Deno.test("sim: a cut-off leader answers its follower's reads from its lease only while it holds", () => {
  const r = cutOffLeaderScenario(5, 1, "follower");
  assertTrue(r.leaseReads > 0, "the old leader answered its follower from its lease after the cut");
  assertTrue(r.newLeaderWrites > 0, "the majority elected a leader and wrote k");
});

Deno.test("sim (seed scenario): 3 nodes elect exactly one leader within 500 ms", () => {
  let worst = 0;
  for (let seed = 1; seed <= 100; seed++) {
    const c = new Cluster(new SeededRandom(seed), 3, quiet);
    c.net.faults = { dropRate: 0, duplicateRate: 0, minDelay: 1, maxDelay: 4 };
    let ticks = 0;
    while (c.leaders().length === 0) {
      runTicks(c, 1);
      ticks++;
      assertTrue(ticks <= 50, `seed ${seed}: no leader after ${ticks * 10} ms`);
    }
    assertEquals(c.leaders().length, 1);
    worst = Math.max(worst, ticks);
    runTicks(c, 100);
    assertEquals(c.leaders().length, 1, `seed ${seed}: still exactly one leader a second later`);
  }
  assertTrue(worst * 10 <= 500, `slowest election took ${worst * 10} ms`);
});

Deno.test("sim (seed scenario): 5 nodes partitioned {2,3} | {1,4,5}: only the majority commits", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const c = new Cluster(new SeededRandom(seed), 5, quiet);
    c.net.faults = { dropRate: 0, duplicateRate: 0, minDelay: 1, maxDelay: 3 };
    let leader = settle(c);
    // Put the old leader in the minority so it keeps accepting proposals it can never commit.
    if (leader !== "n2") {
      c.nodes.get(leader)!.raft!.transferLeader("n2");
      runTicks(c, 30);
      leader = settle(c);
    }
    assertEquals(leader, "n2", `seed ${seed}`);
    c.net.partition(["n2", "n3"], ["n1", "n4", "n5"]);
    let minorityAccepted = 0;
    for (let i = 0; i < 30; i++) {
      if (c.write("n2", `minority${i}`)) minorityAccepted++;
      const maj = c.leaders().find((n) => ["n1", "n4", "n5"].includes(n.id));
      if (maj) c.write(maj.id, `majority${i}`);
      runTicks(c, 5);
    }
    assertTrue(minorityAccepted > 0, "the minority leader accepted proposals");
    const applied = c.checker.committed.filter((e) => e !== undefined).map((e) =>
      fromUtf8(e!.data)
    );
    assertTrue(applied.some((d) => d.includes("majority")), `seed ${seed}: the majority committed`);
    assertTrue(
      !applied.some((d) => d.includes("minority")),
      `seed ${seed}: a minority write committed`,
    );
    for (const id of ["n2", "n3"]) {
      assertTrue(c.nodes.get(id)!.kv.applied < c.checker.maxCommitted, "the minority is behind");
    }
    c.net.heal();
    settle(c);
    runTicks(c, 50);
    const after = c.checker.committed.filter((e) => e !== undefined).map((e) => fromUtf8(e!.data));
    assertTrue(!after.some((d) => d.includes("minority")), "the minority's proposals never commit");
    const top = c.checker.maxCommitted;
    for (const id of ["n1", "n2", "n3", "n4", "n5"]) assertEquals(c.nodes.get(id)!.kv.applied, top);
  }
});

for (const compact of [false, true]) {
  Deno.test(`sim (seed scenario): a killed follower catches up after 100 commits${compact ? " via a snapshot" : ""}`, () => {
    for (let seed = 1; seed <= 10; seed++) {
      const c = new Cluster(new SeededRandom(seed), 3, {
        ...quiet,
        compactEvery: compact ? 30 : 0,
        compactKeep: 2,
      });
      c.net.faults = { dropRate: 0, duplicateRate: 0, minDelay: 1, maxDelay: 3 };
      const leader = settle(c);
      const follower = ["n1", "n2", "n3"].find((id) => id !== leader)!;
      c.crash(follower);
      const start = c.checker.maxCommitted;
      let acked = 0;
      for (let i = 0; acked < 100 && i < 1000; i++) {
        if (c.write(leader, `k${i % 5}`)) acked++;
        runTicks(c, 1);
      }
      runTicks(c, 20);
      assertTrue(
        c.checker.maxCommitted >= start + 100,
        "100 entries committed without the follower",
      );
      const snapshotsBefore = c.stats.snapshotsSent;
      c.restart(follower);
      runTicks(c, 100);
      const f = c.nodes.get(follower)!;
      const l = c.nodes.get(leader)!;
      assertEquals(f.kv.applied, l.kv.applied, `seed ${seed}: caught up`);
      assertEquals(f.kv.dump(), l.kv.dump());
      if (compact) {
        assertTrue(c.stats.snapshotsSent > snapshotsBefore, "it needed a snapshot");
        assertTrue(f.storage.snapshot().meta.index > start, "and installed it");
      } else {
        assertEquals(c.stats.snapshotsSent, 0);
      }
    }
  });
}
