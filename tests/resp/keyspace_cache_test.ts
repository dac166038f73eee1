import { ManualClock } from "../../lib/common/clock.ts";
import { assertEquals } from "../../lib/common/test_helpers.ts";
import { KeyspaceCache, type KeyspaceCounts } from "../../lib/resp/keyspace_cache.ts";

/** A cache whose counts take `tookMs` of the manual clock and return how many counts ran. */
function counting(clock: ManualClock, tookMs: () => number) {
  let runs = 0;
  const cache = new KeyspaceCache(clock, async (): Promise<KeyspaceCounts> => {
    runs++;
    await Promise.resolve();
    clock.advance(tookMs());
    return { keys: runs, expires: 0, avgTtlMs: 0 };
  });
  return { cache, runs: () => runs };
}

Deno.test("keyspace cache: a quick count is redone every time, an expensive one reused for ten times its length", async () => {
  const clock = new ManualClock();
  let took = 5;
  const c = counting(clock, () => took);
  assertEquals((await c.cache.get()).keys, 1);
  assertEquals((await c.cache.get()).keys, 2, "under 100 ms: counted again");
  took = 400; // a large key space
  assertEquals((await c.cache.get()).keys, 3);
  clock.advance(3_900);
  assertEquals((await c.cache.get()).keys, 3, "within 10 x 400 ms: the last count");
  clock.advance(100);
  assertEquals((await c.cache.get()).keys, 4, "after it: counted again");
});

Deno.test("keyspace cache: calls during a count share it", async () => {
  const clock = new ManualClock();
  const c = counting(clock, () => 1);
  const all = await Promise.all([c.cache.get(), c.cache.get(), c.cache.get()]);
  assertEquals([all.map((x) => x.keys), c.runs()], [[1, 1, 1], 1]);
});
