// A write-behind leader (lib/raft/README.md) that steps down while its own write is in flight:
// the driver then asks with ready(true), and the acknowledgements of the entries that Ready holds
// back must wait for the Ready that writes them.
import { utf8 } from "../common/bytes.ts";
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { TestCluster } from "./testing.ts";
import { type Message, MessageType } from "./types.ts";

/**
 * n1 leads term 1 and has handed out entry 2 ("x", term 1) for a background write that has not
 * finished. n2 wins term 2 with n3 and its Append of its own entry 2 (term 2) reaches n1 only:
 * n1 steps down and replaces its entry 2 in memory.
 */
function leaderDeposedDuringItsWrite() {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  const n1 = c.node("n1");
  assertTrue(n1.propose(utf8("x")).ok);
  const inFlight = n1.ready();
  n1.advanceBeforePersisted(inFlight); // its Appends are lost below
  c.queue = [];
  c.node("n2").campaign();
  const withoutN1 = (m: Message) => m.to !== "n1" && m.from !== "n1";
  for (let i = 0; i < 10 && c.node("n2").status().role !== "leader"; i++) {
    c.processReady("n2");
    c.processReady("n3");
    c.deliver(withoutN1);
  }
  assertEquals([c.node("n2").status().role, c.node("n2").status().term], ["leader", 2]);
  c.queue = c.queue.filter((m) => m.to !== "n1");
  c.processReady("n2");
  c.queue = c.queue.filter((m) => m.to === "n1" && m.type === MessageType.Append);
  assertEquals(c.queue.map((m) => m.entries.map((e) => [e.index, e.term])), [[[2, 2]]]);
  c.deliver();
  assertEquals(n1.status().role, "follower");
  return { c, n1, inFlight };
}

Deno.test("write-behind: a Ready that holds entries back sends no acknowledgement of them", () => {
  const { n1, inFlight } = leaderDeposedDuringItsWrite();
  const held = n1.ready(true);
  assertEquals(held.entries, []);
  assertEquals(held.persistedMessages, [], "an ack of entry 2 (term 2) would leave unwritten");
  // The write in flight completes; the next Ready writes entry 2 (term 2) and acknowledges it.
  n1.persisted(inFlight.entries.at(-1)!.index, inFlight.entries.at(-1)!.term);
  n1.advance(held);
  assertTrue(n1.hasReady(false));
  const writes = n1.ready(false);
  assertEquals(writes.entries.map((e) => [e.index, e.term]), [[2, 2]]);
  assertEquals(
    writes.persistedMessages.map((m) => [MessageType[m.type], m.to, m.index, m.reject]),
    [["AppendResponse", "n2", 2, false]],
  );
});

Deno.test("write-behind: a deposed leader's crash after its held Ready loses no committed entry", () => {
  const { c, n1, inFlight } = leaderDeposedDuringItsWrite();
  const storage = c.peer("n1").storage;
  const held = n1.ready(true);
  // The driver finishes the write in flight, persists the held Ready and sends what it carries.
  storage.append(inFlight.entries);
  n1.persisted(2, 1);
  storage.append(held.entries);
  if (held.hardState) storage.setHardState(held.hardState);
  c.queue.push(...held.messages, ...held.persistedMessages);
  n1.advance(held);
  c.deliver((m) => m.to === "n2");
  c.processReady("n2");
  const committedByN2 = c.node("n2").status().commit;
  // n1 crashes before writing entry 2 (term 2); n2 is cut off; n1 and n3 elect a leader.
  c.restart("n1");
  c.queue = [];
  c.heal();
  c.isolate("n2");
  c.elect("n1");
  c.stabilize();
  const atTwo = (id: string) => c.peer(id).applied.find((e) => e.index === 2)?.term;
  if (committedByN2 >= 2) {
    assertEquals(atTwo("n1"), atTwo("n2"), "two replicas applied different entries at index 2");
  }
  assertEquals(committedByN2, 1, "n2 committed entry 2 on an acknowledgement n1 had not written");
});

Deno.test("write-behind: a held Ready's hard state never commits past the entries written before it", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  const n1 = c.node("n1");
  assertTrue(n1.propose(utf8("x")).ok);
  const inFlight = n1.ready(); // entry 2 (term 1, "x") handed to the background write
  n1.advanceBeforePersisted(inFlight);
  c.queue = [];
  // n2 wins term 2 with n3 and commits its own entry 2 (term 2) with n3.
  c.node("n2").campaign();
  const withoutN1 = (m: Message) => m.to !== "n1" && m.from !== "n1";
  const toN1: Message[] = [];
  for (let i = 0; i < 20; i++) {
    c.processReady("n2");
    c.processReady("n3");
    toN1.push(...c.queue.filter((m) => m.to === "n1"));
    c.deliver(withoutN1);
    c.queue = [];
  }
  assertEquals([c.node("n2").status().role, c.node("n2").status().commit], ["leader", 2]);
  // n2's probe of n1 (its entry 2, term 2), retransmitted once n2 knows it committed.
  const probe = toN1.find((m) => m.type === MessageType.Append && m.entries.length > 0)!;
  n1.step({ ...probe, commit: 2 });
  assertEquals(n1.status().role, "follower");
  const held = n1.ready(true);
  assertEquals(held.entries, []);
  assertEquals(held.committedEntries, [], "nothing applied before its entry is written");
  assertTrue(
    (held.hardState?.commit ?? 1) <= 1,
    `commit ${held.hardState?.commit} covers entry 2, which this Ready does not write`,
  );
  // The driver finishes the write in flight (entry 2 of term 1), saves the held Ready, and
  // crashes before writing entry 2 of term 2: the restarted n1 must not apply its "x".
  const storage = c.peer("n1").storage;
  storage.append(inFlight.entries);
  n1.persisted(2, 1);
  if (held.hardState) storage.setHardState(held.hardState);
  n1.advance(held);
  const restarted = c.restart("n1").node;
  assertEquals(restarted.status().commit, 1);
  assertEquals(restarted.ready().committedEntries.filter((e) => e.index === 2), []);
});
