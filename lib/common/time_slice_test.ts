import { assertTrue } from "./test_helpers.ts";
import { IoTurns, TimeSlice } from "./time_slice.ts";

/**
 * Runs synchronous work in small steps, awaiting `step` after each, until
 * `ms` of wall time passed or (with `workMs`) that much time was spent working.
 */
async function busyLoop(
  ms: number,
  step: () => Promise<void> | undefined,
  workMs = Infinity,
): Promise<number> {
  const end = performance.now() + ms;
  let steps = 0;
  let worked = 0;
  while (performance.now() < end || (workMs !== Infinity && worked < workMs)) {
    if (worked >= workMs) break;
    const s0 = performance.now();
    let x = 0;
    for (let i = 0; i < 1000; i++) x += i;
    if (x < 0) throw new Error("unreachable");
    worked += performance.now() - s0;
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
  const slice = new TimeSlice({ sliceMs: 2, restMs: 0, urgent: () => false });
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

Deno.test("time slice: pauses between slices leave the thread to others, unless the work is urgent", async () => {
  // 2 ms slices with 2 ms pauses: the loop gets at most about half of the wall time.
  const paced = new TimeSlice({ sliceMs: 2, restMs: 2, urgent: () => false });
  const t0 = performance.now();
  await busyLoop(100, () => paced.check(), 60);
  const wall = performance.now() - t0;
  assertTrue(wall >= 100, `60 ms of work with pauses took ${wall.toFixed(0)} ms of wall time`);

  // Urgent work takes turns but no pauses, however long they would be.
  const urgent = new TimeSlice({ sliceMs: 2, restMs: 1000, urgent: () => true });
  const t1 = performance.now();
  await busyLoop(100, () => urgent.check(), 60);
  const took = performance.now() - t1;
  assertTrue(took < 1000, `urgent work paused: ${took.toFixed(0)} ms`);
});

for (
  const [what, makeStep] of [
    ["an urgent TimeSlice", () => {
      // Urgent: turns without pauses, which under Deno need a timer now and then to poll I/O.
      const urgent = new TimeSlice({ sliceMs: 2, restMs: 1000, urgent: () => true });
      return () => urgent.check();
    }],
    ["IoTurns", () => {
      const turns = new IoTurns();
      return () => turns.due();
    }],
  ] as const
) {
  Deno.test(`time slice: a loop with ${what} still lets sockets be served (a TCP echo in the same process)`, async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const serving = (async () => {
      const conn = await listener.accept();
      const b = new Uint8Array(8);
      while ((await conn.read(b)) !== null) await conn.write(b.subarray(0, 1));
      conn.close();
    })();
    const client = await Deno.connect({
      hostname: "127.0.0.1",
      port: (listener.addr as Deno.NetAddr).port,
    });
    try {
      await client.write(new Uint8Array([1])); // the connection is up before the loop starts
      await client.read(new Uint8Array(8));
      const loop = busyLoop(300, makeStep());
      const sent = performance.now();
      await client.write(new Uint8Array([2]));
      await client.read(new Uint8Array(8));
      const rtt = performance.now() - sent;
      await loop;
      // setImmediate turns alone answered only after the loop (about 300 ms).
      assertTrue(rtt < 150, `the echo took ${rtt.toFixed(0)} ms during the loop`);
    } finally {
      client.close();
      listener.close();
      await serving.catch(() => {});
    }
  });
}
