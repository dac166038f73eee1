import { assertEquals } from "./test_helpers.ts";
import { ManualClock } from "./clock.ts";
import { DeadlineQueue } from "./deadline_queue.ts";

Deno.test("deadline queue: each callback runs once at its deadline, in any order of arrival", () => {
  const clock = new ManualClock();
  const queue = new DeadlineQueue(clock);
  const fired: string[] = [];
  queue.add(300, () => fired.push("c@300"));
  queue.add(100, () => fired.push("a@100")); // earlier than the armed timer: re-armed
  queue.add(200, () => fired.push("b@200"));
  clock.advance(99);
  assertEquals(fired, []);
  clock.advance(1);
  assertEquals(fired, ["a@100"]);
  clock.advance(150);
  assertEquals(fired, ["a@100", "b@200"]);
  clock.advance(1_000);
  assertEquals(fired, ["a@100", "b@200", "c@300"]);
  assertEquals(queue.size, 0);
  assertEquals(clock.pendingTimers, 0);
});

Deno.test("deadline queue: a removed entry never fires, and no timer outlives the last entry", () => {
  const clock = new ManualClock();
  const queue = new DeadlineQueue(clock);
  const fired: string[] = [];
  const a = queue.add(100, () => fired.push("a"));
  const b = queue.add(150, () => fired.push("b"));
  queue.remove(a);
  clock.advance(120);
  assertEquals(fired, []);
  queue.remove(b);
  assertEquals(clock.pendingTimers, 0);
  clock.advance(1_000);
  assertEquals(fired, []);
});

Deno.test("deadline queue: a callback may add a new deadline", () => {
  const clock = new ManualClock();
  const queue = new DeadlineQueue(clock);
  const fired: number[] = [];
  queue.add(10, () => {
    fired.push(clock.nowMs());
    queue.add(clock.nowMs() + 10, () => fired.push(clock.nowMs()));
  });
  clock.advance(100);
  assertEquals(fired, [10, 20]);
});

Deno.test("deadline queue: removals in any order leave exactly the others to fire (seeded)", () => {
  const seed = 20261206;
  let state = seed;
  const random = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
  console.log(`seed ${seed}`);
  const clock = new ManualClock();
  const queue = new DeadlineQueue(clock);
  const fired = new Set<number>();
  const entries = Array.from({ length: 200 }, (_, i) => ({
    id: i,
    entry: queue.add(1 + Math.floor(random() * 1_000), () => fired.add(i)),
  }));
  const removed = new Set<number>();
  for (const { id, entry } of entries) {
    if (random() < 0.5) {
      queue.remove(entry);
      queue.remove(entry); // twice: harmless
      removed.add(id);
    }
  }
  assertEquals(queue.size, 200 - removed.size);
  clock.advance(2_000);
  for (let i = 0; i < 200; i++) assertEquals(fired.has(i), !removed.has(i), `entry ${i}`);
  assertEquals(queue.size, 0);
  assertEquals(clock.pendingTimers, 0);
});

Deno.test("deadline queue: a deadline past a runtime timer's range fires at its time, not at once", () => {
  const clock = new ManualClock();
  const queue = new DeadlineQueue(clock);
  const fired: number[] = [];
  const farMs = 100 * 24 * 3_600_000; // 100 days: beyond 2^31 - 1 ms
  queue.add(farMs, () => fired.push(clock.nowMs()));
  clock.advance(2 ** 31 - 1); // the first timer fires early and re-arms
  assertEquals(fired, []);
  assertEquals(clock.pendingTimers, 1);
  clock.advance(farMs);
  assertEquals(fired.length, 1);
  assertEquals(fired[0] >= farMs, true);
});
