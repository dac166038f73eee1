/**
 * One seeded simulation run: a random fault schedule (drops, delays,
 * duplicates, partitions incl. one-way cuts and bridges, crashes and restarts,
 * membership changes, compaction) over a 3- or 5-node cluster, then a healed
 * phase that checks the cluster recovers. Everything derives from the seed.
 *
 * @module
 */

import { SeededRandom } from "../../lib/common/random.ts";
import { Cluster, type SimStats, stepsPerTick } from "./cluster.ts";

/** Options of one run. */
export interface RunOptions {
  seed: number;
  nodes: 3 | 5;
  /** Simulated ticks of the faulty phase (10 ms each). */
  ticks?: number;
  /** Ticks of the final healed phase. */
  healTicks?: number;
  /** Record a trace of notable events. */
  trace?: boolean;
}

/** Outcome of one run. */
export interface RunResult {
  seed: number;
  nodes: number;
  ok: boolean;
  error?: string;
  stats: SimStats;
  trace?: string[];
  config: string;
}

export { stepsPerTick } from "./cluster.ts";

function pick<T>(rng: SeededRandom, xs: T[]): T {
  return xs[rng.nextInt(xs.length)];
}

/** A Fisher-Yates shuffle (Array.sort with a random comparator is not reproducible). */
function shuffle<T>(rng: SeededRandom, xs: T[]): T[] {
  const out = xs.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Runs one seed and reports the first broken invariant, if any. */
export function runSeed(o: RunOptions): RunResult {
  const rng = new SeededRandom(o.seed);
  const preVote = rng.nextFloat() < 0.8;
  const checkQuorum = rng.nextFloat() < 0.8;
  const compactEvery = rng.nextFloat() < 0.7 ? 10 + rng.nextInt(60) : 0;
  const opts = {
    preVote,
    checkQuorum,
    compactEvery,
    compactKeep: rng.nextInt(5),
    midReadyCrashRate: rng.nextFloat() < 0.5 ? 0.002 : 0,
    maxSizePerMsg: rng.nextFloat() < 0.3 ? 200 : undefined,
    maxInflight: rng.nextFloat() < 0.5 ? 1 + rng.nextInt(8) : undefined,
    leaderWriteBehind: rng.nextFloat() < 0.5,
    lazyCommitBroadcast: rng.nextFloat() < 0.5,
    leaseReads: checkQuorum && rng.nextFloat() < 0.5,
  };
  const config = `preVote=${preVote} checkQuorum=${checkQuorum} compactEvery=${compactEvery} ` +
    `midReadyCrash=${opts.midReadyCrashRate} maxSizePerMsg=${
      opts.maxSizePerMsg ?? "-"
    } maxInflight=${
      opts.maxInflight ?? "-"
    } writeBehind=${opts.leaderWriteBehind} lazyCommit=${opts.lazyCommitBroadcast} ` +
    `leaseReads=${opts.leaseReads}`;
  const c = new Cluster(rng, o.nodes, opts);
  if (o.trace) c.trace = [];
  const ticks = o.ticks ?? 600;
  const healTicks = o.healTicks ?? 300;
  const keys = ["a", "b", "c", "d"];
  const membership = rng.nextFloat() < 0.6;
  const bigFaults = rng.nextFloat();
  try {
    let faultUntil = 0;
    for (let t = 0; t < ticks; t++) {
      // Faults change now and then.
      if (t >= faultUntil && rng.nextFloat() < 0.05) {
        faultUntil = t + 20 + rng.nextInt(150);
        c.net.heal();
        const ids = [...c.nodes.keys()];
        const kind = rng.nextInt(6);
        c.net.faults = {
          dropRate: rng.nextFloat() * 0.3,
          duplicateRate: rng.nextFloat() * 0.05,
          minDelay: 1,
          maxDelay: 1 + rng.nextInt(bigFaults < 0.5 ? 8 : 24),
        };
        if (kind === 0) {
          // Random split.
          const shuffled = shuffle(rng, ids);
          const k = 1 + rng.nextInt(ids.length - 1);
          c.net.partition(shuffled.slice(0, k), shuffled.slice(k));
          c.trace?.push(`[${c.now}] partition ${shuffled.slice(0, k)} | ${shuffled.slice(k)}`);
        } else if (kind === 1) {
          // One-way cuts.
          for (let i = 0; i < 1 + rng.nextInt(3); i++) {
            c.net.cutOneWay(pick(rng, ids), pick(rng, ids));
          }
        } else if (kind === 2) {
          // Bridge: two sides that only one node can talk to.
          const shuffled = shuffle(rng, ids);
          const bridge = shuffled[0];
          const rest = shuffled.slice(1);
          const half = Math.floor(rest.length / 2);
          c.net.partition(rest.slice(0, half), rest.slice(half));
          c.trace?.push(
            `[${c.now}] bridge ${bridge}: ${rest.slice(0, half)} | ${rest.slice(half)}`,
          );
        } else if (kind === 3) {
          // Isolate the leader.
          const l = c.leaders()[0];
          if (l) c.net.partition([l.id], ids.filter((x) => x !== l.id));
        }
      } else if (t >= faultUntil) {
        c.net.heal();
        c.net.faults = { dropRate: 0, duplicateRate: 0, minDelay: 1, maxDelay: 3 };
      }
      // Crashes and restarts.
      if (rng.nextFloat() < 0.01) {
        const live = c.liveIds();
        if (live.length > 0) c.crash(pick(rng, live));
      }
      if (rng.nextFloat() < 0.03) {
        const dead = [...c.nodes.values()].filter((n) => !n.alive && !n.retired);
        if (dead.length > 0) c.restart(pick(rng, dead).id);
      }
      // Pauses (GC, SIGSTOP) longer or shorter than an election timeout.
      if (rng.nextFloat() < 0.005) {
        const live = c.liveIds();
        if (live.length > 0) c.pause(pick(rng, live), stepsPerTick * (5 + rng.nextInt(60)));
      }
      // Leadership transfers.
      if (rng.nextFloat() < 0.005) {
        const l = c.leaders()[0];
        const voters = l?.raft?.status().conf.voters ?? [];
        if (l?.raft && voters.length > 0) l.raft.transferLeader(pick(rng, voters));
      }
      // Membership changes, one at a time.
      if (membership && rng.nextFloat() < 0.02) changeMembership(c, rng, o.nodes);
      // Clients.
      const live = c.liveIds();
      if (live.length > 0) {
        const n = rng.nextInt(4);
        for (let i = 0; i < n; i++) {
          const leader = c.leaders()[0];
          const target = leader && rng.nextFloat() < 0.8 ? leader.id : pick(rng, live);
          if (rng.nextFloat() < 0.7) c.write(target, pick(rng, keys));
          else c.read(target, pick(rng, keys));
        }
      }
      for (let s = 0; s < stepsPerTick; s++) c.step(stepsPerTick);
      c.expireClients();
    }
    heal(c, healTicks);
    c.compareReplicas();
    c.stats.dropped = c.net.dropped;
    return { seed: o.seed, nodes: o.nodes, ok: true, stats: c.stats, trace: c.trace, config };
  } catch (e) {
    return {
      seed: o.seed,
      nodes: o.nodes,
      ok: false,
      error: e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ""}` : String(e),
      stats: c.stats,
      trace: c.trace,
      config,
    };
  }
}

/** One random membership step: add a learner, promote it, or remove a member. */
function changeMembership(c: Cluster, rng: SeededRandom, size: number): void {
  const leader = c.leaders()[0];
  if (!leader?.raft) return;
  const conf = leader.raft.status().conf;
  const r = rng.nextFloat();
  if (conf.learners.length > 0 && r < 0.5) {
    const id = pick(rng, conf.learners);
    leader.raft.proposeMembershipChange({ type: "addVoter", nodeId: id });
  } else if (conf.voters.length > 2 && r < 0.6) {
    // Demote a voter (maybe the leader itself) to learner.
    leader.raft.proposeMembershipChange({ type: "addLearner", nodeId: pick(rng, conf.voters) });
  } else if (conf.voters.length + conf.learners.length < size + 2 && r < 0.8) {
    const id = c.addServer();
    const res = leader.raft.proposeMembershipChange({ type: "addLearner", nodeId: id });
    if (!res.ok) c.retire(id);
  } else if (conf.voters.length > size - 1 || conf.learners.length > 0) {
    const members = conf.voters.length > 2 ? conf.voters.concat(conf.learners) : conf.learners;
    if (members.length === 0) return;
    const id = pick(rng, members);
    const res = leader.raft.proposeMembershipChange({ type: "removeNode", nodeId: id });
    if (res.ok) {
      // The removed server keeps running for a while (it must not disrupt), then stops.
      const node = c.nodes.get(id);
      if (node) node.retireAt = c.now + 200 + rng.nextInt(800);
    }
  }
  for (const n of c.nodes.values()) {
    const at = n.retireAt;
    if (at !== undefined && at <= c.now && !n.retired) {
      const l = c.leaders()[0];
      if (
        l?.raft && !l.raft.status().conf.voters.includes(n.id) &&
        !l.raft.status().conf.learners.includes(n.id)
      ) {
        c.retire(n.id);
      }
    }
  }
}

/**
 * Heals everything, restarts crashed members, and checks liveness: one leader
 * among the members, and a new write commits on every live member.
 */
function heal(c: Cluster, healTicks: number): void {
  c.net.heal();
  c.net.faults = { dropRate: 0, duplicateRate: 0, minDelay: 1, maxDelay: 2 };
  c.opts = { ...c.opts, midReadyCrashRate: 0 };
  for (const n of c.nodes.values()) n.pausedUntil = 0;
  // Removed servers are shut down (with PreVote or CheckQuorum they could not
  // disrupt anyway; without them, they may keep forcing elections forever).
  for (const id of c.removed) c.retire(id);
  for (const n of c.nodes.values()) if (!n.alive && !n.retired) c.restart(n.id);
  const run = (ticks: number) => {
    for (let t = 0; t < ticks; t++) for (let s = 0; s < stepsPerTick; s++) c.step(stepsPerTick);
  };
  // Elections are randomized: allow several rounds until every live node follows one leader.
  const stableLeader = () => {
    const l = c.leaders()[0];
    if (!l?.raft) return undefined;
    const s = l.raft.status();
    for (const n of c.nodes.values()) {
      if (!n.raft || !s.conf.voters.includes(n.id)) continue;
      const ns = n.raft.status();
      if (ns.term !== s.term || ns.leaderId !== l.id) return undefined;
    }
    return l;
  };
  let leader = stableLeader();
  for (let t = 0; t < healTicks * 4 && !leader; t++) {
    run(1);
    leader = stableLeader();
  }
  if (!leader?.raft) {
    const st = [...c.nodes.values()].map((x) =>
      x.raft ? JSON.stringify(x.raft.status()) : `${x.id} down`
    );
    throw new Error(
      `liveness: no stable leader ${healTicks * 4} ticks after healing\n${st.join("\n")}`,
    );
  }
  // Members as the leader sees them all run.
  const conf = leader.raft.status().conf;
  for (const id of conf.voters.concat(conf.learners)) if (!c.nodes.get(id)?.alive) c.restart(id);
  let wrote = false;
  for (let t = 0; t < healTicks && !wrote; t++) {
    const l = stableLeader();
    if (l) wrote = c.write(l.id, "final");
    run(1);
  }
  if (!wrote) throw new Error("liveness: no leader accepted the final write");
  run(Math.floor(healTicks / 2));
  let last = stableLeader();
  for (let t = 0; t < healTicks * 4 && !last; t++) {
    run(1);
    last = stableLeader();
  }
  const top = last?.raft?.status();
  if (!top) throw new Error("liveness: no stable leader at the end");
  // Every member applies everything the leader has committed (give the last
  // commit index a few heartbeats to spread).
  const members = top.conf.voters.concat(top.conf.learners);
  const behind = () => members.filter((id) => (c.nodes.get(id)?.kv.applied ?? 0) < top.commit);
  for (let t = 0; t < healTicks && behind().length > 0; t++) run(1);
  const lagging = behind();
  if (lagging.length > 0) {
    const st = [...c.nodes.values()].map((x) =>
      x.raft ? JSON.stringify(x.raft.status()) : `${x.id} down`
    );
    throw new Error(
      `liveness: ${
        lagging.join(",")
      } did not apply the leader's commit ${top.commit} after healing\n${st.join("\n")}`,
    );
  }
}
