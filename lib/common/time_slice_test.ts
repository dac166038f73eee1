import { assertTrue } from "./test_helpers.ts";
import { TimeSlice } from "./time_slice.ts";

/** Runs `ms` of synchronous work in small steps, awaiting `step` after each. */
async function busyLoop(ms: number, step: () => Promise<void> | undefined): Promise<number> {
  const end = performance.now() + ms;
  let steps = 0;
  while (performance.now() < end) {
    let x = 0;
    for (let i = 0; i < 1000; i++) x += i;
    if (x < 0) throw new Error("unreachable");
    steps++;
    const turn = step();
    if (turn !== undefined) await turn;
    else await Promise.resolve(); // what a loop over settled promises does: no turn
  }
  return steps;
}

Deno.test("time slice: a long loop lets a timer run long before it ends", async () => {
  let firedAt = -1;
  const start = performance.now();
  setTimeout(() => (firedAt = performance.now() - start), 0);
  const slice = new TimeSlice(2);
  await busyLoop(200, () => slice.check());
  // 2 ms slices: the first turn comes after about 2 ms (the bound leaves room for a busy machine).
  assertTrue(firedAt >= 0 && firedAt < 100, `the timer ran after ${firedAt.toFixed(1)} ms`);
});

Deno.test("time slice: without it the same loop starves the timer", async () => {
  let firedAt = -1;
  const start = performance.now();
  setTimeout(() => (firedAt = performance.now() - start), 0);
  await busyLoop(60, () => undefined);
  assertTrue(firedAt < 0, "the timer could not run during the loop");
  await new Promise((r) => setTimeout(r, 0));
  assertTrue(firedAt >= 60, `it ran only after the loop: ${firedAt.toFixed(1)} ms`);
});
