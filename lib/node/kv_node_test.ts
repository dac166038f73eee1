import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { concatBytes, fromUtf8, utf8 } from "../common/bytes.ts";
import { maxKeyBytes } from "../common/limits.ts";
import { CommandOp, encodeCommand } from "./command.ts";
import { KVNode } from "./kv_node.ts";
import { SystemClock } from "../common/clock.ts";
import { Logger } from "./logger.ts";
import { singleNodeConfig, untilLeader } from "./testing.ts";

/** The system clock, with a wall clock that a test can move ahead (a skewed or stepped clock). */
class SkewableClock extends SystemClock {
  skewMs = 0;
  override wallMs(): number {
    return super.wallMs() + this.skewMs;
  }
}

/** A one-node cluster in this process, on a temp dir, once it leads; closed and removed by `using`. */
async function singleNode(clock = new SkewableClock()) {
  const root = await Deno.makeTempDir({ prefix: "rustkvd-node-test-" });
  const node = await KVNode.start(singleNodeConfig(`${root}/n1`), {
    log: new Logger("n1", "error", () => {}),
    clock,
  });
  const close = async () => {
    await node.close();
    await Deno.remove(root, { recursive: true });
  };
  try {
    await untilLeader(node);
  } catch (e) {
    await close();
    throw e;
  }
  return { node, [Symbol.asyncDispose]: close };
}

Deno.test("a retried put or delete with prevKv gets the value its first attempt replaced", async () => {
  await using n = await singleNode();
  const { node } = n;
  await node.put(utf8("k"), utf8("v1"));
  const first = await node.put(utf8("k"), utf8("v2"), { prevKv: true, requestId: "put-1" });
  const retry = await node.put(utf8("k"), utf8("v2"), { prevKv: true, requestId: "put-1" });
  assertEquals(fromUtf8(first.prev!.value), "v1");
  assertEquals(retry.version, first.version);
  assertEquals(fromUtf8(retry.prev!.value), "v1", "not 'no previous value'");
  assertEquals(retry.prev!.version, first.prev!.version);

  const del = await node.delete(utf8("k"), { prevKv: true, requestId: "del-1" });
  const delRetry = await node.delete(utf8("k"), { prevKv: true, requestId: "del-1" });
  assertEquals(delRetry.deleted, true);
  assertEquals(delRetry.version, del.version);
  assertEquals(fromUtf8(delRetry.prev!.value), "v2");
});

Deno.test("a conditional write stamped before a key expired, appended after, cannot bring it back", async () => {
  await using n = await singleNode();
  const { node } = n;
  const { version } = await node.put(utf8("k"), utf8("v1"), { ttlSecs: 1 });
  const expiresAtMs = node.clock.wallMs() + 1_000;
  // A write (say PERSIST) stamped while the key was live, resent after it expired.
  const stale = encodeCommand({
    op: CommandOp.Put,
    timestampMs: expiresAtMs - 500,
    requestId: "late-1",
    key: utf8("k"),
    value: utf8("v1"),
    expiresAtMs: 0,
    ifVersion: version,
  });
  for (let i = 0; i < 100 && node.clock.wallMs() <= expiresAtMs + 50; i++) {
    await new Promise((r) => setTimeout(r, 25));
  }
  assertEquals((await node.get(utf8("k"))).kv, undefined, "a read after the expiry sees no key");
  let outcome: string;
  try {
    const r = await node.replica.propose(stale, node.clock.nowMs() + 5_000);
    outcome = r.error ? r.error.name : "applied";
  } catch (e) {
    outcome = (e as Error).name;
  }
  assertEquals(outcome, "ConflictError", "judged at its append time, the key is gone");
  assertEquals((await node.get(utf8("k"))).kv, undefined, "and it stays gone");

  // The time it was judged at is the leader's clock when it entered the log, not its stamp.
  const before = node.clock.wallMs();
  const old = encodeCommand({
    op: CommandOp.Put,
    timestampMs: before - 120_000,
    requestId: "late-2",
    key: utf8("j"),
    value: utf8("x"),
    expiresAtMs: 0,
    ifVersion: undefined,
  });
  await node.replica.propose(old, node.clock.nowMs() + 5_000);
  const applied = await node.stateMachine.appliedRequest("late-2", node.clock.wallMs());
  assertTrue(applied !== undefined && applied.appliedAtMs >= before, JSON.stringify(applied));
});

Deno.test("scan pages past a key of the full 4 KiB length (the next page starts at key + 0x00)", async () => {
  await using n = await singleNode();
  const { node } = n;
  const long = (c: string) => utf8(c.repeat(maxKeyBytes));
  await node.put(long("a"), utf8("1"));
  await node.put(long("b"), utf8("2"));
  const first = await node.scan({ start: long("a"), limit: 1 });
  assertEquals([first.kvs.length, first.more], [1, true]);
  const next = concatBytes(first.kvs[0].key, new Uint8Array([0]));
  const second = await node.scan({ start: next, limit: 1, version: first.version });
  assertEquals(second.kvs.map((kv) => fromUtf8(kv.value)), ["2"]);
  assertEquals(second.more, false);
});

Deno.test("a read at a version names answers from history, also while that version is the newest", async () => {
  const clock = new SkewableClock();
  await using n = await singleNode(clock);
  const { node } = n;
  await node.put(utf8("b"), utf8("plain"));
  const { version } = await node.put(utf8("t"), utf8("ttl"), { ttlSecs: 1 });
  clock.skewMs = 5_000; // the wall clock jumps past the expiry; version is still the newest
  const at = { version };
  assertEquals(fromUtf8((await node.get(utf8("t"), at)).kv!.value), "ttl");
  assertEquals((await node.scan(at)).kvs.map((kv) => fromUtf8(kv.key)), ["b", "t"]);
  assertEquals((await node.get(utf8("t"))).kv, undefined, "the newest state hides it");
  await node.put(utf8("c"), utf8("later")); // version becomes history: the same answers
  assertEquals(fromUtf8((await node.get(utf8("t"), at)).kv!.value), "ttl");
  assertEquals((await node.scan(at)).kvs.map((kv) => fromUtf8(kv.key)), ["b", "t"]);
});

Deno.test("a read at an older revision gives the same answer before and after a key's TTL runs out", async () => {
  await using n = await singleNode();
  const { node } = n;
  const { version } = await node.put(utf8("t"), utf8("ttl"), { ttlSecs: 1 });
  await node.put(utf8("a"), utf8("plain")); // `version` is history from here on
  const keysAt = async () => (await node.scan({ version })).kvs.map((kv) => fromUtf8(kv.key));
  assertEquals(fromUtf8((await node.get(utf8("t"), { version })).kv!.value), "ttl");
  assertEquals(await keysAt(), ["t"]);
  const expiresAtMs = node.clock.wallMs() + 1_000;
  for (let i = 0; i < 100 && node.clock.wallMs() <= expiresAtMs + 50; i++) {
    await new Promise((r) => setTimeout(r, 25));
  }
  assertEquals((await node.get(utf8("t"))).kv, undefined, "gone at the newest revision");
  assertEquals(fromUtf8((await node.get(utf8("t"), { version })).kv!.value), "ttl", "as it was");
  assertEquals(await keysAt(), ["t"], "a scan paged at that revision still sees it");
  // A read made of many steps (MGET, EXEC, KEYS) judges TTLs at the time it pinned its revision.
  const pin = await node.pinRevision("linearizable");
  try {
    const at = { version, ttlAtMs: pin.ttlAtMs };
    assertTrue(pin.ttlAtMs >= expiresAtMs, "pinned after the expiry");
    assertEquals((await node.get(utf8("t"), at)).kv, undefined, "expired when the pin was taken");
    assertEquals((await node.scan(at)).kvs, []);
  } finally {
    pin.release();
  }
});

Deno.test("a transaction that cannot write takes no revision, with a request id too, also when refused", async () => {
  await using n = await singleNode();
  const { node } = n;
  const big = new Uint8Array(900 * 1024);
  for (const k of ["a", "b", "c", "d"]) await node.put(utf8(k), big);
  const revision = () => node.stateMachine.revision;
  const before = revision();
  const reads = ["a", "b"].map((k) => ({ kind: "get" as const, key: utf8(k) }));
  const r = await node.txn({ compares: [], success: reads, failure: [] }, { requestId: "ro-1" });
  assertEquals(r.succeeded, true);
  await node.txn({ compares: [], success: [], failure: [] }, { requestId: "empty-1" });
  const tooBig = ["a", "b", "c", "d"].map((k) => ({ kind: "get" as const, key: utf8(k) }));
  let refused = "";
  try {
    await node.txn({ compares: [], success: tooBig, failure: [] }, { requestId: "big-1" });
  } catch (e) {
    refused = (e as Error).name;
  }
  assertEquals(refused, "InvalidArgumentError", "an answer over the response limit");
  assertEquals(revision(), before, "no transaction above took a revision");
});

Deno.test("compact refuses version 0 and a version above the current revision, naming the field", async () => {
  await using n = await singleNode();
  const { node } = n;
  const { version } = await node.put(utf8("k"), utf8("v"));
  const refusal = (p: Promise<unknown>) => p.then(() => "done", (e) => `${e.name}: ${e.message}`);
  assertEquals(await refusal(node.compact(0)), "InvalidArgumentError: version must be at least 1");
  assertEquals(
    await refusal(node.compact(version + 1)),
    `FutureVersionError: version ${version + 1} is newer than the current version ${version}`,
  );
  assertEquals(await node.compact(version), version);
});

Deno.test("a key deleted or written again without TTL leaves the expiry queue at once", async () => {
  await using n = await singleNode();
  const { node } = n;
  for (let i = 0; i < 100; i++) await node.put(utf8(`t${i}`), utf8("v"), { ttlSecs: 3_600 });
  assertEquals(node.expiries.size, 100);
  for (let i = 0; i < 50; i++) await node.delete(utf8(`t${i}`));
  for (let i = 50; i < 90; i++) await node.put(utf8(`t${i}`), utf8("no ttl"));
  assertEquals([node.expiries.size, node.expiries.heldItems], [10, 10]);
});
