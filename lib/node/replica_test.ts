import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { utf8 } from "../common/bytes.ts";
import { ManualClock } from "../common/clock.ts";
import { maxEntryBytes } from "../common/limits.ts";
import { SeededRandom } from "../common/random.ts";
import { EntryType, type Message, MessageType } from "../raft/types.ts";
import { Engine } from "../storage/engine.ts";
import type { FileHandle, FileSystem } from "../storage/fs.ts";
import { MemFileSystem } from "../storage/mem_fs.ts";
import { encodeCommand } from "./command.ts";
import { Logger } from "./logger.ts";
import { RaftLogStore } from "./raft_log_store.ts";
import { newReadBoot, readContext, readRoundOf, Replica } from "./replica.ts";
import { voteQuietMs } from "./read_lease.ts";
import { StateMachine } from "./state_machine.ts";
import { plainPut } from "./testing.ts";

const conf = { voters: ["n1", "n2", "n3"], learners: [] };

const put = (key: string, value: string) => encodeCommand(plainPut(key, value));

/** A replica of `conf` with a manual clock (nothing ticks unless a test says so). */
function replicaOf(
  nodeId: string,
  store: RaftLogStore,
  stateMachine: StateMachine,
  clock = new ManualClock(),
  leaseReads = false,
): Replica {
  return new Replica({
    nodeId,
    groupId: 0,
    store,
    stateMachine,
    clock,
    leaseReads,
    random: new SeededRandom(conf.voters.indexOf(nodeId) + 1),
    log: new Logger(nodeId, "error", () => {}),
    tickMs: 10,
    electionTicks: 15,
    heartbeatTicks: 5,
    members: conf.voters.map((id) => ({ id, addr: `${id}:1`, learner: false })),
    onFatal: (e) => {
      throw e;
    },
    installSnapshot: () => Promise.resolve(),
    snapshotEntries: 1_000,
  });
}

Deno.test("a state machine ahead of the log (a leader's write lost in a crash) starts from the log's end", async () => {
  const fs = new MemFileSystem();
  const data = [put("a", "1"), put("b", "2"), put("c", "3"), put("d", "4"), put("e", "5")];
  const entries = data.map((d, i) => ({
    index: i + 1,
    term: 1,
    type: EntryType.Normal,
    groupId: 0,
    data: d,
  }));
  const store = await RaftLogStore.open(fs, "/raft", 0, conf);
  // The leader's write of 4 and 5 was lost; its followers held them, so it had applied them.
  await store.save(
    { entries: entries.slice(0, 3), hardState: { term: 1, vote: "n1", commit: 2 } },
    true,
  );
  const engine = await Engine.open("/sm", { fs });
  const sm = new StateMachine(engine);
  await sm.apply(entries.map((e) => ({ index: e.index, data: e.data })));
  assertEquals([sm.appliedIndex, sm.revision], [5, 5]);

  const replica = replicaOf("n1", store, sm);
  const s = replica.node.status();
  assertEquals([s.commit, s.applied, s.lastIndex], [3, 3, 3], "the core knows only its log");
  // When 4 and 5 arrive again from the new leader, the state machine has them already.
  const again = await sm.apply(entries.slice(3).map((e) => ({ index: e.index, data: e.data })));
  assertEquals([again.size, sm.appliedIndex, sm.revision], [0, 5, 5]);
  await engine.close();
});

/**
 * A file system whose Raft log appends wait while `held` (a slow disk under
 * the leader's log); `letThrough(n)` lets the next n waiting or new appends
 * pass and holds the rest.
 */
class HeldLogFs implements FileSystem {
  held = false;
  #passes = 0;
  #waiters: (() => void)[] = [];
  constructor(readonly inner: MemFileSystem) {}
  hold(): void {
    this.held = true;
  }
  release(): void {
    this.held = false;
    for (const go of this.#waiters.splice(0)) go();
  }
  letThrough(n: number): void {
    this.#passes += n;
    for (const go of this.#waiters.splice(0)) go();
  }
  #wrap(f: FileHandle): FileHandle {
    if (!f.path.endsWith(".rlog")) return f;
    const append = f.append.bind(f);
    f.append = async (data: Uint8Array) => {
      while (this.held && this.#passes === 0) {
        await new Promise<void>((r) => this.#waiters.push(r));
      }
      if (this.held) this.#passes--;
      return append(data);
    };
    return f;
  }
  async create(path: string) {
    return this.#wrap(await this.inner.create(path));
  }
  async open(path: string) {
    return this.#wrap(await this.inner.open(path));
  }
  readFile(path: string) {
    return this.inner.readFile(path);
  }
  rename(from: string, to: string) {
    return this.inner.rename(from, to);
  }
  remove(path: string) {
    return this.inner.remove(path);
  }
  list(dir: string) {
    return this.inner.list(dir);
  }
  mkdir(dir: string) {
    return this.inner.mkdir(dir);
  }
  syncDir(dir: string) {
    return this.inner.syncDir(dir);
  }
  stat(path: string) {
    return this.inner.stat(path);
  }
}

/**
 * Three replicas whose Raft logs can be held (HeldLogFs), over an in-process
 * network where each batch of messages arrives a turn later.
 */
async function heldLogCluster() {
  const ids = ["n1", "n2", "n3"];
  const fss = ids.map(() => new HeldLogFs(new MemFileSystem()));
  const replicas: Replica[] = [];
  const engines: Engine[] = [];
  const stores: RaftLogStore[] = [];
  for (let i = 0; i < ids.length; i++) {
    const store = await RaftLogStore.open(fss[i], "/raft", 0, conf);
    const engine = await Engine.open("/sm", { fs: fss[i] });
    stores.push(store);
    engines.push(engine);
    replicas.push(replicaOf(ids[i], store, new StateMachine(engine)));
  }
  for (const r of replicas) {
    r.transport = {
      send: (messages) => {
        for (const m of messages) {
          const to = replicas[ids.indexOf(m.to)];
          setTimeout(() => to.step([m]), 0);
        }
      },
    };
  }
  return { fss, replicas, engines, stores };
}

Deno.test("a leader commits with its followers' copies but applies only what its own log holds", async () => {
  const { fss, replicas, engines } = await heldLogCluster();
  const [n1] = replicas;
  try {
    n1.node.campaign();
    n1.step([]);
    for (let i = 0; i < 200 && !n1.isLeader; i++) await new Promise((r) => setTimeout(r, 1));
    assertEquals(n1.isLeader, true);
    await n1.propose(encodeCommand(plainPut("a", "1")), Date.now() + 5_000);

    fss[0].hold(); // n1's own log write stalls; n2 and n3 write theirs
    const write = n1.propose(encodeCommand(plainPut("b", "2")), Date.now() + 5_000);
    const index = n1.node.status().lastIndex;
    for (let i = 0; i < 200 && n1.node.status().commit < index; i++) {
      await new Promise((r) => setTimeout(r, 1));
    }
    assertEquals(n1.node.status().commit, index, "committed by n2 and n3 alone");
    await new Promise((r) => setTimeout(r, 20));
    assertEquals(await engines[0].get(utf8("b")), undefined, "not applied before n1 wrote it");
    fss[0].release();
    await write;
    assertEquals(new TextDecoder().decode((await engines[0].get(utf8("b")))!.value), "2");
  } finally {
    fss[0].release();
    for (const r of replicas) await r.stop();
    for (const e of engines) await e.close();
  }
});

Deno.test("a leader deposed while its own write is in flight never makes a commit index past its log durable", async () => {
  const { fss, replicas, engines, stores } = await heldLogCluster();
  const turn = () => new Promise((r) => setTimeout(r, 1));
  const [n1] = replicas;
  let crashed: MemFileSystem | undefined;
  try {
    n1.node.campaign();
    n1.step([]);
    for (let i = 0; i < 200 && !n1.isLeader; i++) await turn();
    assertEquals(n1.isLeader, true);
    await n1.propose(put("a", "1"), Date.now() + 5_000);
    fss[0].hold(); // n1's own log write stalls (a slow fsync); n2 and n3 write theirs
    n1.propose(put("b", "2"), Date.now() + 5_000).catch(() => {});
    await turn();
    n1.propose(put("c", "3"), Date.now() + 5_000).catch(() => {}); // held for the next write
    const lastIndex = n1.node.status().lastIndex;
    for (let i = 0; i < 200 && n1.node.status().commit < lastIndex; i++) await turn();
    assertEquals(n1.node.status().commit, lastIndex, "committed by n2 and n3");
    // A leadership transfer (a rolling restart) while the write is in flight.
    n1.transferLeader("n2");
    for (let i = 0; i < 200 && n1.node.status().role === "leader"; i++) await turn();
    assertEquals(n1.node.status().role, "follower");
    // The disk comes back for two appends: the write in flight and the deposed leader's next
    // Ready (its new term); the power goes before the write of the entries that Ready held.
    fss[0].letThrough(2);
    for (let i = 0; i < 200 && stores[0].memory.hardState().term < 2; i++) await turn();
    crashed = fss[0].inner.crashClone();
  } finally {
    fss[0].release();
    for (const r of replicas) await r.stop();
    for (const e of engines) await e.close();
  }
  const store = await RaftLogStore.open(crashed!, "/raft", 0, conf);
  const recovered = store.recovered();
  assertTrue(
    recovered.hardState.commit <= recovered.lastIndex,
    `commit ${recovered.hardState.commit} is durable over a log ending at ${recovered.lastIndex}`,
  );
  const engine = await Engine.open("/sm", { fs: crashed! });
  try {
    replicaOf("n1", store, new StateMachine(engine)); // starts (it threw: commit past the log)
  } finally {
    await engine.close();
  }
});

/**
 * Three replicas with lease reads on one manual clock, over an in-process
 * network (a message arrives a turn later unless `drop` says otherwise), and
 * the ReadIndex heartbeat rounds each one sent.
 */
async function leaseCluster() {
  const ids = ["n1", "n2", "n3"];
  const clock = new ManualClock();
  const replicas: Replica[] = [];
  const engines: Engine[] = [];
  const contexts = new Map<string, Set<string>>(ids.map((id) => [id, new Set()]));
  const rounds = { get: (id: string) => contexts.get(id)!.size };
  const net = { drop: (_m: Message) => false };
  for (const id of ids) {
    const fs = new MemFileSystem();
    const store = await RaftLogStore.open(fs, "/raft", 0, conf);
    const engine = await Engine.open("/sm", { fs });
    engines.push(engine);
    replicas.push(replicaOf(id, store, new StateMachine(engine), clock, true));
  }
  for (const r of replicas) {
    r.transport = {
      send: (messages) => {
        for (const m of messages) {
          if (m.type === MessageType.Heartbeat && (m.context?.length ?? 0) > 0) {
            contexts.get(m.from)!.add(new TextDecoder().decode(m.context));
          }
          if (net.drop(m)) continue;
          const to = replicas[ids.indexOf(m.to)];
          setTimeout(() => to.step([m]), 0);
        }
      },
    };
    r.start();
  }
  const turns = async (n = 5) => {
    for (let i = 0; i < n; i++) await new Promise((r) => setTimeout(r, 0));
  };
  /** Lets `ms` of cluster time pass a tick at a time, delivering messages in between. */
  const elapse = async (ms: number) => {
    for (let t = 0; t < ms; t += 10) {
      clock.advance(Math.min(10, ms - t));
      await turns();
    }
  };
  // Voters ignore votes for one election timeout after starting; then someone wins.
  let leader: Replica | undefined;
  for (let i = 0; i < 100 && leader === undefined; i++) {
    clock.advance(10);
    await turns();
    leader = replicas.find((r) => r.isLeader);
  }
  assertTrue(leader !== undefined, "a leader within 1 s of cluster time");
  const stop = async () => {
    for (const r of replicas) await r.stop();
    for (const e of engines) await e.close();
  };
  return { clock, replicas, leader, rounds, net, turns, elapse, stop };
}

Deno.test("lease reads: after one confirmed round the leader serves reads without heartbeat rounds until the lease runs out", async () => {
  const c = await leaseCluster();
  try {
    const id = c.leader.node.id;
    await c.leader.propose(put("a", "1"), c.clock.nowMs() + 5_000);
    await c.leader.readBarrier(c.clock.nowMs() + 5_000); // takes the lease
    const after = c.rounds.get(id)!;
    for (let i = 0; i < 20; i++) await c.leader.readBarrier(c.clock.nowMs() + 5_000);
    await c.turns();
    assertEquals(c.rounds.get(id), after, "no round while the lease holds");

    // With under half the lease left, a read asks for one round in the background.
    await c.elapse(70);
    await c.leader.readBarrier(c.clock.nowMs() + 5_000);
    await c.turns();
    assertEquals(c.rounds.get(id), after + 1, "one renewal round");
    // From here on no follower answers: only a lease can serve a read.
    c.net.drop = (m) => m.from !== id;
    await c.elapse(100); // past the first lease, within the renewed one
    let served = false;
    const leased = c.leader.readBarrier(c.clock.nowMs() + 5_000).then(() => (served = true));
    await c.turns();
    assertTrue(served, "served from the renewed lease without an answer from anyone");
    await leased;

    // The lease lapses and reads wait for a round again.
    await c.elapse(30);
    let outcome = "";
    const read = c.leader.readBarrier(c.clock.nowMs() + 5_000).then(
      () => (outcome = "confirmed"),
      (e) => (outcome = String(e)),
    );
    await c.turns();
    assertEquals(outcome, "", "a read waits for a quorum once the lease ran out");
    c.net.drop = () => false;
    for (let i = 0; i < 50 && outcome === ""; i++) await c.elapse(10);
    await read;
    assertEquals(outcome, "confirmed", "confirmed by the next heartbeat round");
  } finally {
    await c.stop();
  }
});

Deno.test("lease reads: a leadership transfer ends the lease at once", async () => {
  const c = await leaseCluster();
  try {
    const id = c.leader.node.id;
    await c.leader.readBarrier(c.clock.nowMs() + 5_000);
    await c.leader.readBarrier(c.clock.nowMs() + 5_000);
    const target = c.replicas.find((r) => r !== c.leader)!.node.id;
    c.net.drop = (m) => m.to === target; // the transfer cannot finish
    c.leader.transferLeader(target);
    await c.turns();
    const before = c.rounds.get(id)!;
    let outcome = "";
    const read = c.leader.readBarrier(c.clock.nowMs() + 5_000).then(
      () => (outcome = "confirmed"),
      (e) => (outcome = String(e)),
    );
    for (let i = 0; i < 50 && outcome === ""; i++) await c.elapse(10);
    assertTrue(outcome !== "", "the read finished");
    assertTrue(c.rounds.get(id)! > before, "the read waited for a heartbeat round, not the lease");
    await read;
  } finally {
    await c.stop();
  }
});

Deno.test("lease reads: a voter that ignores votes for less time than the lease assumes shortens it", async () => {
  const c = await leaseCluster();
  try {
    const id = c.leader.node.id;
    const others = c.replicas.filter((r) => r !== c.leader).map((r) => r.node.id);
    assertEquals(c.leader.voteQuietMs, voteQuietMs(15, 10, true), "what this node announces");
    // With the same settings everywhere the lease (117 ms) covers a read 60 ms after its round.
    await c.leader.readBarrier(c.clock.nowMs() + 5_000);
    c.net.drop = (m) => m.from !== id;
    await c.elapse(60);
    let served = false;
    let read = c.leader.readBarrier(c.clock.nowMs() + 5_000).then(() => (served = true));
    await c.turns();
    assertTrue(served, "served from the lease");
    await read;

    // One voter runs with a 50 ms election timeout: it promises 36 ms, so leases last 27 ms.
    c.leader.notePeerVoteQuiet(others[0], voteQuietMs(5, 10, true));
    c.net.drop = () => false;
    await c.elapse(200);
    await c.leader.readBarrier(c.clock.nowMs() + 5_000); // a fresh lease
    c.net.drop = (m) => m.from !== id;
    await c.elapse(20);
    served = false;
    read = c.leader.readBarrier(c.clock.nowMs() + 5_000).then(() => (served = true));
    await c.turns();
    assertTrue(served, "within the shortened lease");
    await read;
    await c.elapse(10);
    served = false;
    read = c.leader.readBarrier(c.clock.nowMs() + 5_000).then(() => (served = true));
    await c.turns();
    assertTrue(!served, "30 ms after its round the shortened lease is over: the read waits");
    c.net.drop = () => false;
    for (let i = 0; i < 50 && !served; i++) await c.elapse(10);
    await read;

    // A voter without lease reads promises nothing across a restart: no lease at all.
    c.leader.notePeerVoteQuiet(others[1], voteQuietMs(15, 10, false));
    await c.elapse(200);
    await c.leader.readBarrier(c.clock.nowMs() + 5_000);
    const rounds = c.rounds.get(id)!;
    for (let i = 0; i < 3; i++) await c.leader.readBarrier(c.clock.nowMs() + 5_000);
    assertEquals(c.rounds.get(id), rounds + 3, "every read waited for a heartbeat round");
  } finally {
    await c.stop();
  }
});

Deno.test("lease reads: a follower's reads always go to the leader", async () => {
  const c = await leaseCluster();
  try {
    const follower = c.replicas.find((r) => r !== c.leader)!;
    await c.leader.readBarrier(c.clock.nowMs() + 5_000);
    const before = c.rounds.get(c.leader.node.id)!;
    for (let i = 0; i < 3; i++) {
      await c.elapse(200); // the leader's lease lapses: each forwarded read needs a round
      await follower.readBarrier(c.clock.nowMs() + 5_000);
    }
    assertTrue(c.rounds.get(c.leader.node.id)! >= before + 3, "the leader confirmed each");
    assertEquals(c.rounds.get(follower.node.id), 0, "a follower sends no heartbeats");
  } finally {
    await c.stop();
  }
});

Deno.test("a command too large for one Raft entry is refused before it is proposed", async () => {
  const c = await leaseCluster();
  try {
    const huge = new Uint8Array(maxEntryBytes + 1);
    const refused = (p: Promise<unknown>) => p.then(() => "proposed", (e) => (e as Error).name);
    assertEquals(
      await refused(c.leader.propose(huge, c.clock.nowMs() + 5_000)),
      "InvalidArgumentError",
    );
    const follower = c.replicas.find((r) => r !== c.leader)!;
    assertEquals(
      await refused(follower.proposeAnywhere(huge, "", c.clock.nowMs() + 5_000)),
      "InvalidArgumentError",
    );
    // The log took nothing, and the next write goes through.
    await c.leader.propose(put("after", "1"), c.clock.nowMs() + 5_000);
  } finally {
    await c.stop();
  }
});

Deno.test("replica: an answer to a read round of an earlier run is never taken for this run's round", () => {
  // The leader keeps rounds a crashed follower asked; its restarted run numbers rounds from 1 again.
  const before = newReadBoot();
  const after = newReadBoot();
  assertTrue(before !== after);
  assertEquals(readRoundOf(after, readContext(after, 1)), 1);
  assertEquals(readRoundOf(after, readContext(before, 1)), -1);
  assertEquals(readRoundOf(after, utf8("r1")), -1, "the old form");
});
