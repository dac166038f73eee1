import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { SeededRandom, testSeed } from "../common/random.ts";
import { Histogram } from "./histogram.ts";

Deno.test("histogram percentiles stay within 0.2 % of exact ones over a wide spread", () => {
  const seed = testSeed();
  const rnd = new SeededRandom(seed);
  const h = new Histogram();
  const values: number[] = [];
  for (let i = 0; i < 50_000; i++) {
    // Log-uniform from 1 µs to 10 s.
    const v = Math.round(Math.exp(rnd.nextFloat() * Math.log(10_000_000)));
    values.push(v);
    h.record(v);
  }
  values.sort((a, b) => a - b);
  for (const p of [0, 1, 50, 90, 99, 99.9, 99.99, 100]) {
    // The exact rank in integers: (99.9 / 100) * 50,000 is 49,950.000000000004 in floating point,
    // whose ceiling is one rank too high (the histogram counts in millionths of a percent).
    const rank = Math.ceil((Math.round(p * 1e6) * values.length) / 1e8 - 1e-9);
    const exact = values[Math.max(0, rank - 1)];
    const got = h.percentile(p);
    assertTrue(
      Math.abs(got - exact) <= Math.max(1, exact * 0.002),
      `seed ${seed}: p${p} got ${got}, exact ${exact}`,
    );
  }
  assertEquals(h.count, 50_000);
  assertEquals(h.max, values[values.length - 1]);
  assertEquals(h.min, values[0]);
});

Deno.test("small values are exact; merging equals recording everything in one", () => {
  const a = new Histogram();
  const b = new Histogram();
  const all = new Histogram();
  for (let v = 0; v < 1000; v++) {
    (v % 2 ? a : b).record(v);
    all.record(v);
  }
  a.merge(b);
  for (const p of [10, 50, 99]) assertEquals(a.percentile(p), all.percentile(p));
  assertEquals(all.percentile(50), 499);
  assertEquals(all.mean, 499.5);
  assertEquals(new Histogram().percentile(99), 0);
});

Deno.test("a percentile's rank is exact where floating point is not: p99.9 of 1,000 values is the 999th", () => {
  const h = new Histogram();
  for (let v = 1; v <= 999; v++) h.record(v);
  h.record(100_000);
  assertEquals(h.percentile(99.9), 999, "not the largest value");
  assertEquals(h.percentile(100), 100_000);
  assertEquals(h.percentile(99.8), 998);
  const single = new Histogram();
  single.record(7);
  assertEquals([single.percentile(0), single.percentile(50), single.percentile(99.9)], [7, 7, 7]);
});
