import { utf8 } from "../common/bytes.ts";
import { assertEquals } from "../common/test_helpers.ts";
import { encodeConfChange } from "./codec.ts";
import { describeEntry, describeMessage, describeReady } from "./describe.ts";
import { EntryType, MessageType, newMessage } from "./types.ts";

Deno.test("describe: entries, messages and a Ready render on one line", () => {
  const e = { index: 7, term: 2, type: EntryType.Normal, groupId: 1, data: utf8("put a 1") };
  assertEquals(describeEntry(e), `2/7 "put a 1"`);
  assertEquals(describeEntry({ ...e, data: new Uint8Array() }), "2/7 noop");
  assertEquals(describeEntry({ ...e, data: new Uint8Array([0, 255]) }), "2/7 0x00ff");
  assertEquals(
    describeEntry({
      ...e,
      type: EntryType.ConfChange,
      data: encodeConfChange({ type: "addVoter", nodeId: "n4" }),
    }),
    "2/7 conf addVoter n4",
  );
  const m = newMessage({
    type: MessageType.Append,
    groupId: 1,
    from: "n1",
    to: "n2",
    term: 2,
    logTerm: 1,
    index: 6,
    commit: 5,
    entries: [e],
  });
  assertEquals(describeMessage(m), `n1->n2 Append t2 log=1/6 commit=5 [2/7 "put a 1"]`);
  const r = newMessage({
    type: MessageType.AppendResponse,
    groupId: 1,
    from: "n2",
    to: "n1",
    term: 2,
    index: 6,
    reject: true,
    rejectHint: 3,
    logTerm: 1,
  });
  assertEquals(describeMessage(r), "n2->n1 AppendResponse t2 index=6 reject hint=1/3");
  const line = describeReady({
    softState: { role: "leader", leaderId: "n1" },
    hardState: { term: 2, vote: "n1", commit: 5 },
    entries: [e],
    committedEntries: [],
    messages: [m],
    persistedMessages: [],
    readStates: [{ index: 5, context: utf8("r1") }],
    mustSync: true,
  });
  assertEquals(
    line,
    `Ready sync soft=leader/n1 hs=(t2 vote=n1 commit=5) entries=[2/7 "put a 1"] ` +
      `msgs=[n1->n2 Append t2 log=1/6 commit=5 [2/7 "put a 1"]] reads=[5:"r1"]`,
  );
});
