import { assertEquals } from "../common/test_helpers.ts";
import { ManualClock } from "../common/clock.ts";
import { SeededRandom } from "../common/random.ts";
import { EntryType } from "../raft/types.ts";
import { Engine } from "../storage/engine.ts";
import { MemFileSystem } from "../storage/mem_fs.ts";
import { encodeCommand } from "./command.ts";
import { Logger } from "./logger.ts";
import { RaftLogStore } from "./raft_log_store.ts";
import { Replica } from "./replica.ts";
import { StateMachine } from "./state_machine.ts";
import { plainPut } from "./testing.ts";

const conf = { voters: ["n1", "n2", "n3"], learners: [] };

const put = (key: string, value: string) => encodeCommand(plainPut(key, value));

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

  const replica = new Replica({
    nodeId: "n1",
    groupId: 0,
    store,
    stateMachine: sm,
    clock: new ManualClock(),
    random: new SeededRandom(1),
    log: new Logger("n1", "error", () => {}),
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
  const s = replica.node.status();
  assertEquals([s.commit, s.applied, s.lastIndex], [3, 3, 3], "the core knows only its log");
  // When 4 and 5 arrive again from the new leader, the state machine has them already.
  const again = await sm.apply(entries.slice(3).map((e) => ({ index: e.index, data: e.data })));
  assertEquals([again.size, sm.appliedIndex, sm.revision], [0, 5, 5]);
  await engine.close();
});
