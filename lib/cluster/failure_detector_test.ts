import { assertEquals } from "../common/test_helpers.ts";
import {
  classifyPeer,
  downAfterMs,
  keepAliveIntervalMs,
  suspectAfterMs,
} from "./failure_detector.ts";

Deno.test("failure detector: healthy, then suspect, then down as silence grows", () => {
  assertEquals(classifyPeer(0), "healthy");
  assertEquals(classifyPeer(suspectAfterMs - 1), "healthy");
  assertEquals(classifyPeer(suspectAfterMs), "suspect");
  assertEquals(classifyPeer(downAfterMs - 1), "suspect");
  assertEquals(classifyPeer(downAfterMs), "down");
  assertEquals(classifyPeer(undefined), "down");
});

Deno.test("failure detector: a peer that misses one keep-alive is still healthy", () => {
  assertEquals(classifyPeer(2 * keepAliveIntervalMs), "healthy");
  assertEquals(keepAliveIntervalMs * 4 <= suspectAfterMs, true);
});
