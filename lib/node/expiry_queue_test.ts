import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { SeededRandom, testSeed } from "../common/random.ts";
import { ExpiryQueue } from "./expiry_queue.ts";

Deno.test("expiry queue pops exactly the expired keys, earliest first", () => {
  const seed = testSeed();
  const rnd = new SeededRandom(seed);
  const q = new ExpiryQueue();
  const times: number[] = [];
  for (let i = 0; i < 2_000; i++) {
    const t = 1 + rnd.nextInt(10_000); // 0 would mean "never expires"
    times.push(t);
    q.push({ key: new Uint8Array([i >> 8, i & 0xff]), version: i + 1, expiresAtMs: t });
  }
  times.sort((a, b) => a - b);
  const first = q.popExpired(5_000, 100_000).map((e) => e.expiresAtMs);
  assertEquals(first, times.filter((t) => t <= 5_000), `seed ${seed}`);
  const capped = q.popExpired(10_000, 10);
  assertEquals(
    capped.map((e) => e.expiresAtMs),
    times.filter((t) => t > 5_000).slice(0, 10),
    `seed ${seed}`,
  );
  assertEquals(q.size, times.filter((t) => t > 5_000).length - 10);
  assertEquals(q.popExpired(-1, 10), []);
});

Deno.test("expiry queue keeps one item per key, exactly the keys whose newest version expires", () => {
  const q = new ExpiryQueue();
  const key = new Uint8Array([7]);
  // One key rewritten with a TTL many times: one item, at its newest schedule.
  for (let v = 1; v <= 5_000; v++) q.push({ key, version: v, expiresAtMs: 1_000 + v });
  assertEquals([q.size, q.heldItems], [1, 1]);
  // An older schedule pushed again (a failed expiry proposal re-queued) changes nothing.
  q.push({ key, version: 3, expiresAtMs: 10 });
  assertEquals(q.popExpired(100_000, 10).map((e) => e.version), [5_000]);
  assertEquals(q.size, 0);
  // A schedule whose ExpireKey entry was applied is settled (followers never pop).
  for (let i = 0; i < 3_000; i++) {
    const k = new Uint8Array([i >> 8, i & 0xff]);
    q.push({ key: k, version: i + 1, expiresAtMs: i });
    q.settled(k, i + 1);
  }
  assertEquals([q.size, q.heldItems], [0, 0]);
  assertEquals(q.popExpired(100_000, 10_000), []);
});

Deno.test("expiry queue drops a key written again without TTL or deleted, not one rewritten with a TTL", () => {
  const q = new ExpiryQueue();
  const k = (i: number) => new Uint8Array([i]);
  for (let i = 0; i < 4; i++) q.push({ key: k(i), version: 10 + i, expiresAtMs: 1_000 });
  q.push({ key: k(0), version: 20, expiresAtMs: 0 }); // SET without TTL (or PERSIST)
  q.push({ key: k(1), version: 21, expiresAtMs: 0 }); // a delete
  q.push({ key: k(2), version: 5, expiresAtMs: 0 }); // an older write: changes nothing
  q.push({ key: k(3), version: 22, expiresAtMs: 500 }); // a new, earlier TTL
  assertEquals([q.size, q.heldItems], [2, 2]);
  assertEquals(q.popExpired(10_000, 10).map((e) => [e.key[0], e.version, e.expiresAtMs]), [
    [3, 22, 500],
    [2, 12, 1_000],
  ]);
});

Deno.test("expiry queue: popping a round of due keys is bounded, however often they were rescheduled", () => {
  const seed = testSeed();
  const rnd = new SeededRandom(seed);
  const q = new ExpiryQueue();
  const keys = Array.from({ length: 20_000 }, (_, i) => new Uint8Array([i >> 8, i & 0xff, 1]));
  // Every key due at 1,000, then moved to a random later time, or earlier, or dropped.
  keys.forEach((key, i) => q.push({ key, version: i + 1, expiresAtMs: 1_000 }));
  const expected = new Map<number, number>();
  keys.forEach((key, i) => {
    const choice = rnd.nextInt(3);
    const at = choice === 0 ? 0 : choice === 1 ? 2_000 + rnd.nextInt(1_000) : 1 + rnd.nextInt(999);
    q.push({ key, version: 100_000 + i, expiresAtMs: at });
    if (at > 0) expected.set(i, at);
  });
  assertEquals([q.size, q.heldItems], [expected.size, expected.size], `seed ${seed}`);
  // A round at 1,000 takes only keys due by then, at most `max` of them, in time order.
  const round = q.popExpired(1_000, 1_000);
  const due = [...expected.values()].filter((t) => t <= 1_000).sort((a, b) => a - b);
  assertEquals(round.map((e) => e.expiresAtMs), due.slice(0, 1_000), `seed ${seed}`);
  let all = round.length;
  for (let n = 0; n < 100; n++) {
    const more = q.popExpired(10_000, 1_000);
    if (more.length === 0) break;
    for (let j = 1; j < more.length; j++) {
      assertTrue(more[j - 1].expiresAtMs <= more[j].expiresAtMs, `seed ${seed}: heap order`);
    }
    all += more.length;
  }
  assertEquals(all, expected.size, `seed ${seed}: every scheduled key once`);
});

Deno.test("expiry queue holds a copy of each key, not a view into the entry it came from", () => {
  const q = new ExpiryQueue();
  const entry = new Uint8Array(1 << 20);
  entry.set([1, 2, 3], 100);
  q.push({ key: entry.subarray(100, 103), version: 1, expiresAtMs: 1 });
  const [item] = q.popExpired(1, 1);
  assertEquals(item.key, new Uint8Array([1, 2, 3]));
  assertEquals(item.key.buffer.byteLength, 3);
});
