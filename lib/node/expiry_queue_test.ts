import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { SeededRandom, testSeed } from "../common/random.ts";
import { ExpiryQueue } from "./expiry_queue.ts";

Deno.test("expiry queue pops exactly the expired keys, earliest first", () => {
  const seed = testSeed();
  const rnd = new SeededRandom(seed);
  const q = new ExpiryQueue();
  const times: number[] = [];
  for (let i = 0; i < 2_000; i++) {
    const t = rnd.nextInt(10_000);
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

Deno.test("expiry queue keeps one schedule per key, and stays bounded by the keys", () => {
  const q = new ExpiryQueue();
  const key = new Uint8Array([7]);
  // One key rewritten with a TTL many times: only its newest schedule is live.
  for (let v = 1; v <= 5_000; v++) q.push({ key, version: v, expiresAtMs: 1_000 + v });
  assertEquals(q.size, 1);
  assertTrue(q.heldItems <= 2_100, `held ${q.heldItems}`);
  // An older schedule pushed again (a failed expiry proposal re-queued) does not revive.
  q.push({ key, version: 3, expiresAtMs: 10 });
  assertEquals(q.popExpired(100_000, 10).map((e) => e.version), [5_000]);
  assertEquals(q.size, 0);
  // A schedule whose ExpireKey entry was applied is settled (followers never pop).
  for (let i = 0; i < 3_000; i++) {
    const k = new Uint8Array([i >> 8, i & 0xff]);
    q.push({ key: k, version: i + 1, expiresAtMs: i });
    q.settled(k, i + 1);
  }
  assertEquals(q.size, 0);
  assertTrue(q.heldItems <= 1_100, `held ${q.heldItems}`);
  assertEquals(q.popExpired(100_000, 10_000), []);
});

Deno.test("expiry queue holds a copy of each key, not a view into the entry it came from", () => {
  const q = new ExpiryQueue();
  const entry = new Uint8Array(1 << 20);
  entry.set([1, 2, 3], 100);
  q.push({ key: entry.subarray(100, 103), version: 1, expiresAtMs: 0 });
  const [item] = q.popExpired(0, 1);
  assertEquals(item.key, new Uint8Array([1, 2, 3]));
  assertEquals(item.key.buffer.byteLength, 3);
});
