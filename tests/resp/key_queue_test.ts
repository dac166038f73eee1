/** KeyQueue: one task at a time per key, in order; other keys run beside them. */
import { assertEquals } from "../../lib/common/test_helpers.ts";
import { KeyQueue } from "../../lib/resp/key_queue.ts";

const enc = new TextEncoder();
const tick = () => new Promise((r) => setTimeout(r, 1));

Deno.test("KeyQueue: tasks of one key run one at a time, in order; other keys overlap them", async () => {
  const q = new KeyQueue();
  const log: string[] = [];
  let running = 0;
  let most = 0;
  const task = (name: string) => async () => {
    running++;
    most = Math.max(most, running);
    log.push(`start ${name}`);
    await tick();
    log.push(`end ${name}`);
    running--;
    return name;
  };
  const hot = enc.encode("hot");
  const results = await Promise.all([
    q.run(hot, task("a")),
    q.run(hot, task("b")),
    q.run(enc.encode("other"), task("x")),
    q.run(hot, task("c")),
  ]);
  assertEquals(results, ["a", "b", "x", "c"]);
  const hotOnly = log.filter((l) => !l.endsWith(" x"));
  assertEquals(hotOnly, ["start a", "end a", "start b", "end b", "start c", "end c"]);
  assertEquals(most, 2, "x ran beside a hot task");
  assertEquals(q.busyKeys, 0, "nothing left behind");
});

Deno.test("KeyQueue: a failed task does not hold up the next one of its key", async () => {
  const q = new KeyQueue();
  const key = enc.encode("k");
  const failed = q.run(key, async () => {
    await tick();
    throw new Error("boom");
  });
  const next = q.run(key, () => Promise.resolve("next"));
  let error = "";
  await failed.catch((e) => (error = (e as Error).message));
  assertEquals(error, "boom");
  assertEquals(await next, "next");
  // Keys that differ only past 8,192 bytes are different keys.
  const long = (last: number) => new Uint8Array(9_000).fill(7).fill(last, 8_999);
  const order: number[] = [];
  await Promise.all([1, 2].map((n) =>
    q.run(long(n), async () => {
      order.push(n);
      await tick();
      order.push(n);
    })
  ));
  assertEquals(order, [1, 2, 1, 2]);
  assertEquals(q.busyKeys, 0);
});
