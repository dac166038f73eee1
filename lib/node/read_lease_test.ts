import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { leaseDurationMs, leaseLimitMs, ReadLease, voteQuietMs } from "./read_lease.ts";

Deno.test("read lease: lasts two ticks less than the election timeout, at 0.9 of a tick", () => {
  assertEquals(leaseDurationMs(15, 10), 117);
  assertEquals(leaseDurationMs(2, 10), 0, "too short a timeout leaves no lease");
});

Deno.test("read lease: runs from when its round was asked for, not when it was confirmed", () => {
  const lease = new ReadLease(100);
  assertTrue(!lease.holds(0, 1), "none before a round");
  lease.asked(1, 1_000, 1);
  assertTrue(!lease.holds(1_000, 1), "none while the round is in flight");
  lease.confirmed(1, 1);
  assertTrue(lease.holds(1_050, 1));
  assertTrue(lease.holds(1_099.9, 1));
  assertTrue(!lease.holds(1_100, 1), "over 100 ms after the round was asked for");
});

Deno.test("read lease: a change of epoch before or after the confirmation ends it", () => {
  const lease = new ReadLease(100);
  lease.asked(1, 0, 1);
  lease.confirmed(1, 2); // e.g. a transfer started while the round was out
  assertTrue(!lease.holds(10, 2), "a round asked under an older epoch gives no lease");
  assertTrue(!lease.holds(10, 1));
  lease.asked(2, 20, 2);
  lease.confirmed(2, 2);
  assertTrue(lease.holds(30, 2));
  assertTrue(!lease.holds(30, 3), "the epoch moved on: the lease no longer holds");
});

Deno.test("read lease: later rounds extend it, earlier confirmations never shorten it", () => {
  const lease = new ReadLease(100);
  lease.asked(1, 0, 1);
  lease.asked(2, 60, 1);
  lease.confirmed(2, 1); // confirms round 2 (round 1 is dropped unconfirmed)
  assertTrue(lease.holds(150, 1));
  lease.confirmed(1, 1); // late and already dropped: no effect
  assertTrue(lease.holds(150, 1));
  assertTrue(!lease.holds(160, 1));
});

Deno.test("read lease: asks for a renewal when less than half is left and no round is out", () => {
  const lease = new ReadLease(100);
  assertTrue(lease.wantsRenewal(0, 1), "no lease yet");
  lease.asked(1, 0, 1);
  assertTrue(!lease.wantsRenewal(10, 1), "a round is in flight");
  lease.confirmed(1, 1);
  assertTrue(!lease.wantsRenewal(40, 1), "60 ms left");
  assertTrue(lease.wantsRenewal(51, 1), "49 ms left");
  lease.asked(2, 51, 1);
  assertTrue(!lease.wantsRenewal(60, 1));
  // The round is lost (a dropped heartbeat): after a lease's length it no longer blocks renewal.
  assertTrue(lease.wantsRenewal(151, 1));
  lease.asked(3, 151, 1);
  assertTrue(lease.wantsRenewal(152, 2), "a round of an older epoch does not count");
});

Deno.test("read lease: a voter's promise matches the lease of a leader with the same settings", () => {
  assertEquals(
    voteQuietMs(15, 10, true),
    126,
    "14 ticks at 0.9 of 10 ms (the first may come at once)",
  );
  assertEquals(leaseLimitMs(voteQuietMs(15, 10, true), 10), leaseDurationMs(15, 10));
  assertEquals(voteQuietMs(15, 10, false), 0, "no lease reads: no promise across a restart");
  assertEquals(leaseLimitMs(0, 10), 0);
  // A voter with a shorter election timeout bounds the lease of a leader with a longer one.
  assertEquals(leaseLimitMs(voteQuietMs(5, 10, true), 10), 27);
});

Deno.test("read lease: a voter promising less shortens the lease, also one already held", () => {
  const lease = new ReadLease(100);
  lease.asked(1, 1_000, 1);
  lease.confirmed(1, 1);
  assertTrue(lease.holds(1_060, 1));
  lease.limitTo(50, 1_040);
  assertEquals(lease.effectiveMs, 50);
  assertTrue(lease.holds(1_049, 1));
  assertTrue(!lease.holds(1_060, 1), "the lower limit applies at once");
  lease.limitTo(Number.POSITIVE_INFINITY, 1_070);
  assertTrue(!lease.holds(1_080, 1), "lifting it does not stretch the lease held");
  // A round asked before the lift but confirmed after it gets the lower bound too...
  lease.asked(2, 1_065, 1);
  lease.confirmed(2, 1);
  assertTrue(lease.holds(1_110, 1) && !lease.holds(1_116, 1), "50 ms from 1,065");
  // ...and one asked after it the configured duration.
  lease.asked(3, 1_200, 1);
  lease.confirmed(3, 1);
  assertTrue(lease.holds(1_290, 1), "100 ms from 1,200");
  lease.limitTo(500, 1_300);
  assertEquals(lease.effectiveMs, 100, "a limit never lengthens the lease");
});

Deno.test("read lease: with a limit of 0 there is no lease and no renewal rounds", () => {
  const lease = new ReadLease(100);
  lease.limitTo(0, 0);
  assertTrue(!lease.wantsRenewal(1_000, 1), "no round is asked for a lease that cannot be had");
  lease.asked(1, 1_000, 1);
  lease.confirmed(1, 1);
  assertTrue(!lease.holds(1_000, 1));
});
