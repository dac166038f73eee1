import { assertEquals, assertThrows } from "../common/test_helpers.ts";
import { byteString, utf8 } from "../common/bytes.ts";
import { InvalidArgumentError } from "../common/errors.ts";
import type { KeyValue } from "./state_machine.ts";
import {
  compareHolds,
  keysToRead,
  maxTxnOps,
  planTxn,
  type TxnCompare,
  type TxnRead,
  type TxnRequest,
  validateTxn,
} from "./txn.ts";

const kv = (key: string, value: string, version: number): KeyValue => ({
  key: utf8(key),
  value: utf8(value),
  version,
  expiresAtMs: 0,
});

function stateOf(...kvs: KeyValue[]): TxnRead {
  const m = new Map(kvs.map((x) => [byteString(x.key), x]));
  return (key) => m.get(byteString(key));
}

const byVersion = (key: string, result: TxnCompare["result"], version: number): TxnCompare => ({
  key: utf8(key),
  target: "version",
  result,
  version,
  value: new Uint8Array(),
});

const byValue = (key: string, result: TxnCompare["result"], value: string): TxnCompare => ({
  key: utf8(key),
  target: "value",
  result,
  version: 0,
  value: utf8(value),
});

/** The writes of a plan, compactly: "put k=v if 3", "delete k if 0", "check k is 2". */
function show(plan: ReturnType<typeof planTxn>): string[] {
  return plan.writes.map((w) => {
    const key = byteString(w.key);
    const cond = w.ifVersion === undefined ? "" : ` if ${w.ifVersion}`;
    if (w.checkOnly) return `check ${key} is ${w.ifVersion}`;
    if (w.value === undefined) return `delete ${key}${cond}`;
    return `put ${key}=${byteString(w.value)}${cond}${
      w.expiresAtMs ? ` until ${w.expiresAtMs}` : ""
    }`;
  });
}

Deno.test("txn: version and value comparisons, with a missing key", () => {
  const a = kv("a", "m", 5);
  for (
    const [c, want] of [
      [byVersion("a", "equal", 5), true],
      [byVersion("a", "notEqual", 5), false],
      [byVersion("a", "greater", 4), true],
      [byVersion("a", "less", 5), false],
      [byValue("a", "equal", "m"), true],
      [byValue("a", "notEqual", "m"), false],
      [byValue("a", "greater", "l"), true],
      [byValue("a", "less", "ma"), true], // bytewise: a prefix sorts first
    ] as const
  ) assertEquals(compareHolds(c, a), want, JSON.stringify(c));
  // A missing key has version 0 and fails every value comparison, NOT_EQUAL too.
  assertEquals(compareHolds(byVersion("x", "equal", 0), undefined), true);
  assertEquals(compareHolds(byVersion("x", "less", 1), undefined), true);
  assertEquals(compareHolds(byValue("x", "notEqual", "m"), undefined), false);
  assertEquals(compareHolds(byValue("x", "less", "m"), undefined), false);
});

Deno.test("txn: the plan conditions every key the outcome depends on, and only those", () => {
  const txn: TxnRequest = {
    compares: [byVersion("lock", "equal", 0), byValue("mode", "equal", "on")],
    success: [
      { kind: "put", key: utf8("lock"), value: utf8("me"), ttlSecs: 10, prevKv: false },
      { kind: "put", key: utf8("log"), value: utf8("x"), ttlSecs: 0, prevKv: false },
      { kind: "put", key: utf8("old"), value: utf8("y"), ttlSecs: 0, prevKv: true },
      { kind: "delete", key: utf8("gone"), prevKv: true },
      { kind: "get", key: utf8("seen") },
    ],
    failure: [{ kind: "get", key: utf8("lock") }],
  };
  const state = stateOf(
    kv("mode", "on", 7),
    kv("old", "o", 3),
    kv("gone", "g", 4),
    kv("seen", "s", 6),
    kv("log", "l", 2),
  );
  const plan = planTxn(txn, state, 1_000);
  assertEquals(plan.succeeded, true);
  assertEquals(show(plan), [
    // A compared key that is written carries its condition on the write.
    "put lock=me if 0 until 11000",
    // A blind put of a key nothing depends on has none.
    "put log=x",
    // The previous value is answered: it must not change before the commit.
    "put old=y if 3",
    "delete gone if 4",
    // Keys only compared or read: conditions alone.
    "check mode is 7",
    "check seen is 6",
  ]);
  const outcome = plan.outcome(42);
  assertEquals(outcome.succeeded, true);
  assertEquals(outcome.revision, 42);
  assertEquals(outcome.results, [
    { kind: "put", version: 42, prev: undefined },
    { kind: "put", version: 42, prev: undefined },
    { kind: "put", version: 42, prev: kv("old", "o", 3) },
    { kind: "delete", version: 42, deleted: true, prev: kv("gone", "g", 4) },
    { kind: "get", revision: 42, kv: kv("seen", "s", 6) },
  ]);
  // Someone holds the lock: the failure list runs, and only reads, so nothing is written.
  assertEquals(plan.writesKeys, true);
  const held = planTxn(txn, stateOf(kv("lock", "you", 9), kv("mode", "on", 7)), 1_000);
  assertEquals(held.succeeded, false);
  // Committed only when the client may retry it: as the conditions its answer rests on.
  assertEquals(held.writesKeys, false);
  assertEquals(show(held), ["check lock is 9", "check mode is 7"]);
  assertEquals(held.outcome(30).results, [{ kind: "get", revision: 30, kv: kv("lock", "you", 9) }]);
});

Deno.test("txn: no comparisons run the success list; a delete of a missing key deletes nothing", () => {
  const txn: TxnRequest = {
    compares: [],
    success: [{ kind: "delete", key: utf8("nope"), prevKv: false }],
    failure: [],
  };
  const plan = planTxn(txn, stateOf(), 0);
  assertEquals(plan.succeeded, true);
  assertEquals(show(plan), ["delete nope if 0"]);
  assertEquals(plan.outcome(5).results, [
    { kind: "delete", version: 5, deleted: false, prev: undefined },
  ]);
});

Deno.test("txn: an answer of more than a Scan page of keys and values is refused before anything is written", () => {
  const big = { ...kv("big", "", 1), value: new Uint8Array(2 * 1024 * 1024) };
  const state = stateOf(big, { ...big, key: utf8("big2") });
  const gets: TxnRequest = {
    compares: [],
    success: [{ kind: "get", key: utf8("big") }, { kind: "get", key: utf8("big2") }],
    failure: [],
  };
  assertThrows(
    () => planTxn(gets, state, 0),
    InvalidArgumentError,
    "4194311 bytes of keys and values",
  );
  // The previous values a put or delete returns count too; a blind put's do not.
  const prevs: TxnRequest = {
    compares: [],
    success: [
      { kind: "delete", key: utf8("big"), prevKv: true },
      { kind: "put", key: utf8("big2"), value: utf8("v"), ttlSecs: 0, prevKv: true },
    ],
    failure: [],
  };
  assertThrows(() => planTxn(prevs, state, 0), InvalidArgumentError, "over the limit");
  const blind: TxnRequest = {
    ...prevs,
    success: [
      { kind: "delete", key: utf8("big"), prevKv: true },
      { kind: "put", key: utf8("big2"), value: utf8("v"), ttlSecs: 0, prevKv: false },
    ],
  };
  assertEquals(planTxn(blind, state, 0).succeeded, true);
});

Deno.test("txn: validation names the limit or rule broken", () => {
  const check = {
    key: (k: Uint8Array) => {
      if (k.length === 0) throw new InvalidArgumentError("key must not be empty");
    },
    value: () => {},
    ttlSecs: (t: number) => {
      if (t < 0) throw new InvalidArgumentError("ttl_secs must be a non-negative integer");
    },
  };
  const get = (k: string) => ({ kind: "get" as const, key: utf8(k) });
  const ok: TxnRequest = {
    compares: [byVersion("a", "equal", 1)],
    success: [get("a")],
    failure: [],
  };
  validateTxn(ok, check);
  const cases: Array<[TxnRequest, string]> = [
    [{ ...ok, success: [get("a"), get("a")] }, "a key appears in two success operations"],
    [{ ...ok, compares: [byVersion("", "equal", 1)] }, "key must not be empty"],
    [{ ...ok, compares: [byVersion("a", "equal", -1)] }, "integer >= 0"],
    [
      { ...ok, success: Array.from({ length: maxTxnOps }, (_, i) => get(`k${i}`)) },
      `at most ${maxTxnOps} comparisons and operations, got ${maxTxnOps + 1}`,
    ],
    [
      {
        ...ok,
        failure: [{ kind: "put", key: utf8("a"), value: utf8("v"), ttlSecs: -1, prevKv: false }],
      },
      "ttl_secs",
    ],
    [
      {
        ...ok,
        success: [{
          kind: "put",
          key: utf8("a"),
          value: new Uint8Array(1_600_000),
          ttlSecs: 0,
          prevKv: false,
        }],
      },
      "bytes of keys and values",
    ],
  ];
  for (const [txn, message] of cases) assertThrows(() => validateTxn(txn, check), Error, message);
  // The same key in both lists is fine: only one of them runs.
  validateTxn({ ...ok, failure: [get("a")] }, check);
});

Deno.test("txn: keysToRead lists each key once, compared keys and both lists'", () => {
  const keys = keysToRead({
    compares: [byVersion("a", "equal", 1), byValue("b", "equal", "x")],
    success: [{ kind: "get", key: utf8("a") }, { kind: "delete", key: utf8("c"), prevKv: false }],
    failure: [{ kind: "get", key: utf8("b") }, { kind: "get", key: utf8("d") }],
  });
  assertEquals(keys.map(byteString), ["a", "b", "c", "d"]);
});
