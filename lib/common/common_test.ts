import { assertEquals, assertThrows, assertTrue } from "./test_helpers.ts";
import { assert, AssertionError } from "./assert.ts";
import { crc32 } from "./crc.ts";
import { utf8 } from "./bytes.ts";
import { ManualClock, SystemClock } from "./clock.ts";
import { SeededRandom } from "./random.ts";
import {
  CompactedError,
  CorruptionError,
  InvalidArgumentError,
  isKVError,
  KVError,
  NotLeaderError,
} from "./errors.ts";
import * as limits from "./limits.ts";

Deno.test("assert throws AssertionError with the message", () => {
  assert(true);
  assertThrows(() => assert(false, "broken invariant"), AssertionError, "broken invariant");
});

Deno.test("crc32 matches the IEEE check value and chains", () => {
  assertEquals(crc32(utf8("123456789")), 0xcbf43926);
  const whole = crc32(utf8("hello world"));
  assertEquals(crc32(utf8(" world"), crc32(utf8("hello"))), whole);
});

Deno.test("errors carry codes and say where and why", () => {
  const c = new CorruptionError("wal/000001.log", 4096, "checksum mismatch");
  assertTrue(c instanceof KVError && c.code === "Corruption");
  assertTrue(c.message.includes("wal/000001.log") && c.message.includes("4096"));
  const nl = new NotLeaderError("node2", "127.0.0.1:7002");
  assertTrue(isKVError(nl, "NotLeader") && nl.message.includes("node2"));
  assertTrue(new NotLeaderError(undefined, undefined).message.includes("no leader"));
  assertTrue(new CompactedError(5, 10).message.includes("10"));
  assertTrue(!isKVError(new Error("x")));
  assertTrue(isKVError(new InvalidArgumentError("key exceeds 4096 bytes"), "InvalidArgument"));
});

Deno.test("limits hold the documented values", () => {
  assertEquals(limits.maxKeyBytes, 4096);
  assertEquals(limits.maxValueBytes, 1024 * 1024);
  assertEquals(limits.maxScanLimit, 10_000);
  assertEquals(limits.defaultElectionMs, 150);
});

Deno.test("ManualClock fires timers in due order, intervals repeat", async () => {
  const clock = new ManualClock(0);
  const fired: string[] = [];
  clock.setTimeout(() => fired.push("b@20"), 20);
  clock.setTimeout(() => fired.push("a@10"), 10);
  const every = clock.setInterval(() => fired.push(`tick@${clock.nowMs()}`), 15);
  const cancelled = clock.setTimeout(() => fired.push("never"), 5);
  cancelled.cancel();
  clock.advance(31);
  assertEquals(fired, ["a@10", "tick@15", "b@20", "tick@30"]);
  every.cancel();
  assertEquals(clock.pendingTimers, 0);
  let slept = false;
  const p = clock.sleep(100).then(() => (slept = true));
  clock.advance(99);
  await Promise.resolve();
  assertTrue(!slept);
  clock.advance(1);
  await p;
  assertTrue(slept);
  assertEquals(clock.wallMs() - clock.nowMs(), 1_700_000_000_000);
});

Deno.test("SystemClock sleeps and can be aborted", async () => {
  const clock = new SystemClock();
  const t0 = clock.nowMs();
  await clock.sleep(5);
  assertTrue(clock.nowMs() - t0 >= 4);
  const ac = new AbortController();
  const p = clock.sleep(10_000, ac.signal);
  ac.abort(new Error("stop"));
  let aborted = false;
  await p.catch(() => (aborted = true));
  assertTrue(aborted);
});

Deno.test("SeededRandom replays from its seed and is roughly uniform", () => {
  const a = new SeededRandom(1234);
  const b = new SeededRandom(1234);
  for (let i = 0; i < 100; i++) assertEquals(a.nextU32(), b.nextU32());
  assertTrue(new SeededRandom(1).nextU32() !== new SeededRandom(2).nextU32());
  const r = new SeededRandom(7);
  const buckets = new Array(10).fill(0);
  for (let i = 0; i < 100_000; i++) buckets[r.nextInt(10)]++;
  for (const n of buckets) assertTrue(n > 9_000 && n < 11_000, `bucket ${n} not near 10,000`);
  for (let i = 0; i < 1000; i++) {
    const f = r.nextFloat();
    assertTrue(f >= 0 && f < 1);
  }
  assertThrows(() => r.nextInt(0), RangeError);
});
