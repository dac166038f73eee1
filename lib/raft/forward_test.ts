// Proposal forwarding: a follower relays client data to the leader (etcd's MsgProp path).
import { fromUtf8, utf8 } from "../common/bytes.ts";
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { TestCluster } from "./testing.ts";
import { EntryType, MessageType } from "./types.ts";

function appliedData(c: TestCluster, id: string): string[] {
  return c.peer(id).applied.filter((e) => e.type === EntryType.Normal && e.data.length > 0)
    .map((e) => fromUtf8(e.data));
}

Deno.test("forwarding: a follower's proposal is appended by the leader and applied everywhere", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  const r = c.node("n3").proposeAnywhere(utf8("from-n3"));
  assertEquals(r, { ok: true, forwardedTo: "n1" });
  const rd = c.processReady("n3")!;
  const relayed = rd.messages.filter((m) => m.type === MessageType.Propose);
  assertEquals(relayed.length, 1, "one Propose message to the leader");
  assertEquals(relayed[0].to, "n1");
  c.stabilize();
  for (const id of ["n1", "n2", "n3"]) assertEquals(appliedData(c, id), ["from-n3"], id);
});

Deno.test("forwarding: on the leader proposeAnywhere is an ordinary proposal with an index", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  const r = c.node("n1").proposeAnywhere(utf8("local"));
  assertTrue(r.ok && "index" in r && r.index === 2, `got ${JSON.stringify(r)}`);
});

Deno.test("forwarding: without a known leader the proposal is refused, not queued", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  assertEquals(c.node("n2").proposeAnywhere(utf8("x")), {
    ok: false,
    reason: "notLeader",
    leaderId: "",
  });
});

Deno.test("forwarding: a relayed proposal accepted by a deposed leader is never applied", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  c.isolate("n1");
  c.elect("n2");
  // n3 still believes in n2 now; fake a relay to the old leader n1 as a stale follower would.
  assertTrue(c.node("n1").status().role === "leader", "n1 has not noticed yet");
  c.heal();
  c.node("n1").step({
    type: MessageType.Propose,
    groupId: 0,
    from: "n3",
    to: "n1",
    term: 0,
    entries: [{ index: 0, term: 0, type: EntryType.Normal, groupId: 0, data: utf8("late") }],
  } as never);
  c.stabilize();
  // n1 appended it in its old term, but the new leader's log wins: it is never applied.
  for (const id of ["n1", "n2", "n3"]) assertEquals(appliedData(c, id), [], id);
});

Deno.test("forwarding: a Propose from a non-member is ignored", () => {
  const c = new TestCluster(["n1", "n2", "n3"]);
  c.elect("n1");
  const before = c.node("n1").status().lastIndex;
  c.node("n1").step({
    type: MessageType.Propose,
    groupId: 0,
    from: "intruder",
    to: "n1",
    term: 0,
    entries: [{ index: 0, term: 0, type: EntryType.Normal, groupId: 0, data: utf8("x") }],
  } as never);
  assertEquals(c.node("n1").status().lastIndex, before);
});
