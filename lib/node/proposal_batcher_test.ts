import { assertEquals, assertRejects, assertTrue } from "../common/test_helpers.ts";
import { utf8 } from "../common/bytes.ts";
import { ConflictError, KVError } from "../common/errors.ts";
import {
  type BatchableCommand,
  type Command,
  CommandOp,
  decodeCommand,
  maxBatchCommands,
} from "./command.ts";
import { maxInflightBatches, ProposalBatcher } from "./proposal_batcher.ts";
import { maxPendingProposals } from "../common/limits.ts";
import type { ApplyResult } from "./state_machine.ts";

function put(key: string, requestId = "", ifVersion?: number): BatchableCommand {
  return {
    op: CommandOp.Put,
    timestampMs: 0,
    requestId,
    key: utf8(key),
    value: utf8("v"),
    expiresAtMs: 0,
    ifVersion,
  };
}

/** A proposer whose proposals stay open until the test settles them. */
function fakeRaft() {
  const proposals: { command: Command; requestId: string; settle: (r: ApplyResult) => void }[] = [];
  let revision = 0;
  return {
    proposals,
    propose(data: Uint8Array, requestId: string): Promise<ApplyResult> {
      return new Promise((resolve) =>
        proposals.push({ command: decodeCommand(data), requestId, settle: resolve })
      );
    },
    /** Applies proposal `i` like the state machine: one revision per write. */
    apply(i: number, conflictKey?: string): void {
      const p = proposals[i];
      const one = (c: BatchableCommand): ApplyResult =>
        c.op === CommandOp.Put && new TextDecoder().decode(c.key) === conflictKey
          ? { revision, changed: false, error: new ConflictError(c.key, 0) }
          : { revision: ++revision, changed: true };
      if (p.command.op === CommandOp.Batch) {
        p.settle({ revision, changed: true, results: p.command.commands.map(one) });
      } else p.settle(one(p.command as BatchableCommand));
    },
  };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("batcher: a lone write leaves at once; writes arriving under load share one entry", async () => {
  const raft = fakeRaft();
  let ids = 0;
  const batcher = new ProposalBatcher({
    propose: (d, id) => raft.propose(d, id),
    nextBatchId: () => `b${++ids}`,
    wallMs: () => 42,
  });
  const first = batcher.submit(put("a"), Infinity);
  await tick();
  assertEquals(raft.proposals.length, 1);
  assertEquals(raft.proposals[0].command.op, CommandOp.Put, "alone: the write itself");
  assertEquals(raft.proposals[0].requestId, "b1", "with the batch's id");
  assertEquals(raft.proposals[0].command.timestampMs, 42);
  // Fill the in-flight window, then queue more: they wait and leave together.
  const more = [];
  for (let i = 1; i < maxInflightBatches; i++) {
    more.push(batcher.submit(put(`w${i}`), Infinity));
    await tick();
  }
  assertEquals(raft.proposals.length, maxInflightBatches);
  const queued = ["x", "y", "z"].map((k) => batcher.submit(put(k), Infinity));
  await tick();
  assertEquals(batcher.queued, 3);
  raft.apply(0);
  assertEquals((await first).revision, 1);
  await tick();
  const batch = raft.proposals[maxInflightBatches].command;
  assertTrue(batch.op === CommandOp.Batch);
  assertEquals(batch.commands.length, 3);
  assertEquals(raft.proposals[maxInflightBatches].requestId, `b${maxInflightBatches + 1}`);
  for (let i = 1; i <= maxInflightBatches; i++) raft.apply(i);
  const revisions = await Promise.all([...more, ...queued]);
  // The first write took revision 1; the rest follow in submission order.
  assertEquals(
    revisions.map((r) => r.revision),
    Array.from({ length: maxInflightBatches - 1 + 3 }, (_, i) => i + 2),
  );
});

Deno.test("batcher: each write gets its own outcome; a failed proposal fails every write in it", async () => {
  const raft = fakeRaft();
  const batcher = new ProposalBatcher({
    propose: (d, id) => raft.propose(d, id),
    wallMs: () => 1,
  });
  // Occupy the window so the next three form one batch.
  for (let i = 0; i < maxInflightBatches; i++) {
    batcher.submit(put(`fill${i}`), Infinity);
    await tick();
  }
  const ok = batcher.submit(put("ok", "id-ok"), Infinity);
  const cas = batcher.submit(put("cas", "id-cas", 3), Infinity);
  raft.apply(0);
  await tick();
  raft.apply(maxInflightBatches, "cas");
  assertEquals((await ok).revision, 2);
  await assertRejects(() => cas, ConflictError);
  const batch = raft.proposals[maxInflightBatches].command;
  assertTrue(batch.op === CommandOp.Batch && batch.requestId === "", "no batch id");
  assertEquals(batch.commands.map((c) => c.requestId), ["id-ok", "id-cas"]);

  const failing = new ProposalBatcher({
    propose: () => Promise.reject(new KVError("NotLeader", "not the leader")),
    wallMs: () => 1,
  });
  const writes = [failing.submit(put("p"), Infinity), failing.submit(put("q"), Infinity)];
  for (const w of writes) await assertRejects(() => w, KVError, "not the leader");
});

Deno.test("batcher: the queue is bounded; beyond it writes are refused with a retryable error", async () => {
  const never = new ProposalBatcher({ propose: () => new Promise(() => {}), wallMs: () => 1 });
  for (let i = 0; i < maxInflightBatches; i++) {
    never.submit(put(`fill${i}`), Infinity);
    await tick();
  }
  for (let i = 0; i < maxPendingProposals; i++) never.submit(put(`q${i}`), Infinity);
  await assertRejects(
    () => never.submit(put("one-too-many"), Infinity),
    KVError,
    "too many writes",
  );
});

Deno.test("batcher: a group at the queue's limit is let in or refused whole, never in part", async () => {
  const never = new ProposalBatcher({ propose: () => new Promise(() => {}), wallMs: () => 1 });
  for (let i = 0; i < maxInflightBatches; i++) {
    never.submit(put(`fill${i}`), Infinity);
    await tick();
  }
  const settled = (p: Promise<unknown>) => p.then(() => "applied", () => "refused");
  // Room for 3 more: a group of 10 that starts there goes in whole.
  for (let i = 0; i < maxPendingProposals - 3; i++) never.submit(put(`q${i}`), Infinity);
  const admitted = never.group(() =>
    Array.from({ length: 10 }, (_, i) => never.submit(put(`g${i}`), Infinity))
  );
  assertEquals(never.queued, maxPendingProposals + 7);
  // The queue is now over its limit: the next group is refused whole.
  const refused = never.group(() =>
    Array.from({ length: 4 }, (_, i) => never.submit(put(`h${i}`), Infinity))
  );
  assertEquals(await Promise.all(refused.map(settled)), [
    "refused",
    "refused",
    "refused",
    "refused",
  ]);
  assertEquals(never.queued, maxPendingProposals + 7, "nothing of it queued");
  const pending = await Promise.race([
    Promise.all(admitted.map(settled)),
    tick().then(() => "pending"),
  ]);
  assertEquals(pending, "pending", "the admitted group waits for its batch, none of it refused");
});

Deno.test("batcher: a group is never split across batches, even where a batch fills up", async () => {
  const raft = fakeRaft();
  let ids = 0;
  const batcher = new ProposalBatcher({
    propose: (d, id) => raft.propose(d, id),
    nextBatchId: () => `b${++ids}`,
    wallMs: () => 1,
  });
  for (let i = 0; i < maxInflightBatches; i++) {
    batcher.submit(put(`fill${i}`), Infinity);
    await tick();
  }
  // Queue ungrouped writes that leave room for 5 more commands in the next batch, then a
  // group of 10 and one more ungrouped write: the group must not be cut after its 5th.
  const before = maxBatchCommands - 5;
  for (let i = 0; i < before; i++) batcher.submit(put(`u${i}`), Infinity);
  const group = batcher.group(() =>
    Array.from({ length: 10 }, (_, i) => batcher.submit(put(`g${i}`), Infinity))
  );
  batcher.submit(put("after"), Infinity);
  raft.apply(0);
  await tick();
  const first = raft.proposals[maxInflightBatches].command;
  assertTrue(first.op === CommandOp.Batch);
  assertEquals(first.commands.length, before, "the batch ends before the group");
  raft.apply(1);
  await tick();
  const second = raft.proposals[maxInflightBatches + 1].command;
  assertTrue(second.op === CommandOp.Batch);
  assertEquals(
    second.commands.map((c) => c.op === CommandOp.Put ? new TextDecoder().decode(c.key) : ""),
    [...Array.from({ length: 10 }, (_, i) => `g${i}`), "after"],
    "the group leaves whole and in order",
  );
  for (let i = 2; i < raft.proposals.length; i++) raft.apply(i);
  assertEquals((await Promise.all(group)).length, 10);
});

Deno.test("batcher: a batch takes the latest deadline of its writes, not the earliest", async () => {
  const deadlines: number[] = [];
  const b = new ProposalBatcher({
    propose: (_data, _id, deadlineMs) => {
      deadlines.push(deadlineMs);
      return new Promise<ApplyResult>(() => {}); // left open: only the deadline matters here
    },
    wallMs: () => 0,
  });
  // Submitted together, they leave as one batch.
  for (const [key, deadline] of [["a", 5_000], ["b", 20], ["c", 5_010]] as const) {
    b.submit(put(key), deadline).catch(() => {});
  }
  await tick();
  assertEquals(deadlines, [5_010], "b's 20 ms would have timed out a and c too");
});
