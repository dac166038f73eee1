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
