import { assertEquals } from "../common/test_helpers.ts";
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
    q.push({ key: new Uint8Array([i & 0xff]), version: i + 1, expiresAtMs: t });
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
