import { assertEquals, assertThrows } from "../common/test_helpers.ts";
import { DecodeError, utf8 } from "../common/bytes.ts";
import {
  type BatchableCommand,
  type Command,
  CommandOp,
  decodeCommand,
  encodeCommand,
  requestIdOf,
  withTimestampAtLeast,
} from "./command.ts";
import { plainPut } from "./testing.ts";

const samples: Command[] = [
  {
    op: CommandOp.Put,
    timestampMs: 1_700_000_000_123,
    requestId: "c1-42",
    key: utf8("user:1001"),
    value: utf8('{"name":"Alice"}'),
    expiresAtMs: 0,
    ifVersion: undefined,
    wantPrev: true,
  },
  {
    op: CommandOp.Put,
    timestampMs: 5,
    requestId: "",
    key: utf8("k"),
    value: new Uint8Array(),
    expiresAtMs: 99_999,
    ifVersion: 0,
  },
  { op: CommandOp.Delete, timestampMs: 7, requestId: "r", key: utf8("gone"), ifVersion: 12 },
  {
    op: CommandOp.Txn,
    timestampMs: 8,
    requestId: "m",
    writes: [
      { key: utf8("a"), value: utf8("1"), expiresAtMs: 0 },
      { key: utf8("b"), value: undefined, expiresAtMs: 0 },
    ],
  },
  {
    op: CommandOp.Txn,
    timestampMs: 8,
    requestId: "cond",
    writes: [
      { key: utf8("src"), value: undefined, expiresAtMs: 0, ifVersion: 41 },
      { key: utf8("dst"), value: utf8("v"), expiresAtMs: 123, ifVersion: 0 },
      { key: utf8("free"), value: utf8("w"), expiresAtMs: 0 },
      { key: utf8("read"), value: undefined, expiresAtMs: 0, ifVersion: 7, checkOnly: true },
    ],
  },
  { op: CommandOp.ExpireKey, timestampMs: 9, key: utf8("ttl"), version: 77 },
  { op: CommandOp.CompactHistory, timestampMs: 10, revision: 1_000 },
  {
    op: CommandOp.Batch,
    timestampMs: 11,
    requestId: "b-1",
    commands: [
      {
        op: CommandOp.Put,
        timestampMs: 11,
        requestId: "",
        key: utf8("x"),
        value: utf8("1"),
        expiresAtMs: 0,
        ifVersion: undefined,
      },
      { op: CommandOp.Delete, timestampMs: 11, requestId: "sub", key: utf8("y"), ifVersion: 3 },
      { op: CommandOp.Txn, timestampMs: 11, requestId: "", writes: [] },
    ],
  },
];

Deno.test("every command kind round-trips through its encoding", () => {
  for (const c of samples) assertEquals(decodeCommand(encodeCommand(c)), c);
});

Deno.test("truncated, trailing and unknown command bytes are rejected, never misread", () => {
  for (const c of samples) {
    const bytes = encodeCommand(c);
    for (let cut = 0; cut < bytes.length; cut++) {
      assertThrows(() => decodeCommand(bytes.subarray(0, cut)), DecodeError);
    }
    const extra = new Uint8Array(bytes.length + 1);
    extra.set(bytes);
    // A Txn's one optional trailing byte is its flags: 0 is not a flag it knows.
    const message = c.op === CommandOp.Txn && !c.conflictIsFinal
      ? "unknown transaction flags 0"
      : "trailing";
    assertThrows(() => decodeCommand(extra), DecodeError, message);
  }
  assertThrows(() => decodeCommand(new Uint8Array([2, 1])), DecodeError, "unknown command format");
  assertThrows(
    () => decodeCommand(new Uint8Array([1, 99, 0, 0, 0, 0, 0, 0, 0, 0])),
    DecodeError,
    "unknown command op",
  );
});

Deno.test("requestIdOf reads a write's request id without decoding it, and '' otherwise", () => {
  const ids = samples.map((c) => requestIdOf(encodeCommand(c)));
  assertEquals(ids, ["c1-42", "", "r", "m", "cond", "", "", "b-1"]);
  assertEquals(requestIdOf(new Uint8Array()), "");
  assertEquals(requestIdOf(encodeCommand(samples[0]).subarray(0, 12)), "", "truncated");
});

Deno.test("a batch carries only client writes", () => {
  const bytes = encodeCommand({
    op: CommandOp.Batch,
    timestampMs: 1,
    requestId: "",
    // deno-lint-ignore no-explicit-any
    commands: [{ op: CommandOp.CompactHistory, timestampMs: 1, revision: 5 } as any],
  });
  assertThrows(() => decodeCommand(bytes), DecodeError, "may not carry command op 5");
});

Deno.test("a batch's command must fill exactly the length its prefix gives", () => {
  const put: BatchableCommand = {
    op: CommandOp.Put,
    timestampMs: 1,
    requestId: "",
    key: utf8("k"),
    value: utf8("v"),
    expiresAtMs: 0,
    ifVersion: undefined,
  };
  const bytes = encodeCommand({
    op: CommandOp.Batch,
    timestampMs: 1,
    requestId: "",
    commands: [put],
  });
  // Format, op, timestamp, an empty request id, the count: then the command's length.
  const lengthAt = 12;
  const inner = encodeCommand(put);
  assertEquals(bytes[lengthAt], inner.length);
  // Claims a byte more (and has it): the command ends before its length does.
  const longer = new Uint8Array(bytes.length + 1);
  longer.set(bytes);
  longer[lengthAt]++;
  assertThrows(() => decodeCommand(longer), DecodeError, "read as");
  // Claims a byte less, with a byte after it: the command runs past its length.
  const shorter = new Uint8Array(bytes);
  shorter[lengthAt]--;
  assertThrows(() => decodeCommand(shorter), DecodeError, "read as");
  // Claims more than there is.
  const beyond = new Uint8Array(bytes);
  beyond[lengthAt] = 100;
  assertThrows(() => decodeCommand(beyond), DecodeError, "batch command of 100 bytes");
});

Deno.test("a batch's commands are read in place: one that overruns into the next is refused", () => {
  const commands = [plainPut("a", "1"), plainPut("b", "22"), plainPut("c", "333")];
  const batch = { op: CommandOp.Batch, timestampMs: 1_000, requestId: "", commands } as const;
  const bytes = encodeCommand(batch);
  assertEquals(decodeCommand(bytes), batch);
  // The first command's length prefix claims two bytes fewer: its value then runs into the
  // second command's length prefix.
  const lengthAt = 12;
  const short = new Uint8Array(bytes);
  short[lengthAt] -= 2;
  assertThrows(() => decodeCommand(short), DecodeError, "read as");
  // A batch inside a batch is refused before it is read (no recursion however deep): 30,000
  // levels, laid out from the outside in (each level's length prefix is the size of the rest).
  const inner = encodeCommand({ ...batch, commands: [plainPut("x", "y")] });
  const depth = 30_000;
  const sizes = [inner.length];
  const varint = (n: number) => {
    const out: number[] = [];
    for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n & 0x7f) | 0x80);
    out.push(n);
    return out;
  };
  for (let i = 1; i <= depth; i++) sizes.push(12 + varint(sizes[i - 1]).length + sizes[i - 1]);
  const nested = new Uint8Array(sizes[depth]);
  let at = 0;
  for (let i = depth; i >= 1; i--) {
    nested.set([1, CommandOp.Batch, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, ...varint(sizes[i - 1])], at);
    at += 12 + varint(sizes[i - 1]).length;
  }
  nested.set(inner, at);
  assertThrows(
    () => decodeCommand(nested),
    DecodeError,
    `may not carry command op ${CommandOp.Batch}`,
  );
});

Deno.test("withTimestampAtLeast raises a command's time in a copy, never back, never in place", () => {
  const data = encodeCommand(plainPut("k", "v", "id-1"));
  const original = data.slice();
  const stamped = decodeCommand(data).timestampMs;
  const later = withTimestampAtLeast(data, stamped + 5_000);
  assertEquals(decodeCommand(later).timestampMs, stamped + 5_000);
  assertEquals(requestIdOf(later), "id-1");
  assertEquals(data, original, "the proposer's bytes (maybe already an entry) are untouched");
  assertEquals(withTimestampAtLeast(later, stamped), later, "an earlier clock keeps the stamp");
  const big = 2 ** 40 + 12_345; // both halves of the u64
  assertEquals(decodeCommand(withTimestampAtLeast(data, big)).timestampMs, big);
  const notACommand = new Uint8Array([9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]);
  assertEquals(withTimestampAtLeast(notACommand, big), notACommand);
});

Deno.test("a transaction's flags byte is read only inside its own bytes, also within a batch", () => {
  const txn = (conflictIsFinal: boolean) => ({
    op: CommandOp.Txn as const,
    timestampMs: 0,
    requestId: "t",
    conflictIsFinal,
    writes: [{ key: utf8("k"), value: utf8("v"), expiresAtMs: 0 }],
  });
  for (const first of [txn(false), txn(true)]) {
    const batch = {
      op: CommandOp.Batch as const,
      timestampMs: 5,
      requestId: "b",
      commands: [first, { ...txn(false), requestId: "u" }, {
        op: CommandOp.Delete as const,
        timestampMs: 0,
        requestId: "d",
        key: utf8("k"),
        ifVersion: undefined,
      }],
    };
    const back = decodeCommand(encodeCommand(batch));
    assertEquals(back.op === CommandOp.Batch && back.commands.map((c) => c.requestId), [
      "t",
      "u",
      "d",
    ]);
    assertEquals(
      back.op === CommandOp.Batch && back.commands[0].op === CommandOp.Txn &&
        (back.commands[0].conflictIsFinal ?? false),
      first.conflictIsFinal,
    );
  }
});
