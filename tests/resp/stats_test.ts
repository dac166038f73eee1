/** RESP listener counters: the instantaneous rate over the sampled window, and INFO's byte format. */
import { assertEquals } from "../../lib/common/test_helpers.ts";
import { humanBytes } from "../../lib/resp/commands_server.ts";
import { RespStats } from "../../lib/resp/stats.ts";

Deno.test("instantaneous_ops_per_sec: the rate over the samples kept, the oldest dropped first", () => {
  const s = new RespStats();
  assertEquals(s.instantaneousOpsPerSec(), 0, "no samples");
  s.sample(0);
  assertEquals(s.instantaneousOpsPerSec(), 0, "one sample is no rate");
  s.commandsProcessed = 50;
  s.sample(100);
  assertEquals(s.instantaneousOpsPerSec(), 500);
  // 1,000 commands per 100 ms from here on: once the 16 kept samples all come from
  // this phase, the slow start no longer counts.
  for (let i = 2; i <= 40; i++) {
    s.commandsProcessed += 1_000;
    s.sample(i * 100);
  }
  assertEquals(s.instantaneousOpsPerSec(), 10_000);
  // Idle: the rate falls to 0 once the window holds only idle samples.
  for (let i = 41; i <= 60; i++) s.sample(i * 100);
  assertEquals(s.instantaneousOpsPerSec(), 0);
});

Deno.test("instantaneous_ops_per_sec: a window partly idle averages over its whole span", () => {
  const s = new RespStats();
  for (let i = 0; i < 8; i++) s.sample(i * 100); // 700 ms idle
  s.commandsProcessed = 800;
  s.sample(800);
  assertEquals(s.instantaneousOpsPerSec(), 1_000, "800 commands over 800 ms");
});

Deno.test("INFO's *_human sizes print like Redis's", () => {
  assertEquals(humanBytes(0), "0B");
  assertEquals(humanBytes(1023), "1023B");
  assertEquals(humanBytes(1536), "1.50K");
  assertEquals(humanBytes(5 * 1024 * 1024), "5.00M");
  assertEquals(humanBytes(3 * 1024 ** 3 + 512 * 1024 ** 2), "3.50G");
});
