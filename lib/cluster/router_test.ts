/**
 * Specification tests for the Router: placement follows the ring (and its
 * membership changes), and `describePlacement` is the one line `locate` prints.
 *
 * @module
 */

import { assertEquals, assertThrows, assertTrue } from "../common/test_helpers.ts";
import { utf8 } from "../common/bytes.ts";
import { HashRing, ringPosition } from "./hash_ring.ts";
import { EmptyRingError, Router } from "./router.ts";

Deno.test("locate gives the ring's owner and the next two distinct nodes as replicas", () => {
  const ring = new HashRing(["node1", "node2", "node3", "node4", "node5"]);
  const router = new Router(ring);
  for (const key of ["a", "user/42", "", "\u00e9t\u00e9"]) {
    const p = router.locate(key);
    assertEquals(p.position, ringPosition(key));
    assertEquals([p.owner, ...p.replicas], ring.preferenceList(key));
    assertEquals(p.replicas.length, 2);
    assertTrue(!p.replicas.includes(p.owner));
  }
  assertEquals(router.locate(utf8("user/42")), router.locate("user/42"));
});

Deno.test("locate sees membership changes made on the ring", () => {
  const ring = new HashRing(["node1"]);
  const router = new Router(ring);
  assertEquals(router.locate("k").replicas, []);
  ring.addNode("node2");
  assertEquals(router.locate("k").replicas.length, 1);
  ring.removeNode("node1");
  ring.removeNode("node2");
  assertThrows(() => router.locate("k"), EmptyRingError, "no nodes");
});

Deno.test("describePlacement is one line naming key, position, owner and replicas", () => {
  const router = new Router(new HashRing(["node1", "node2", "node3"]));
  const p = router.locate("hello");
  assertEquals(
    router.describePlacement("hello"),
    `key "hello" @ 0x2cf24dba -> owner ${p.owner}, replicas ${p.replicas.join(", ")}`,
  );
  assertTrue(router.describePlacement(new Uint8Array([0, 255])).startsWith("key 0x00ff @ 0x"));
  assertTrue(new Router(new HashRing(["solo"])).describePlacement("k").endsWith("replicas none"));
  assertTrue(!router.describePlacement("a\nb").includes("\n"), "stays on one line");
});

Deno.test("ringShares maps every node to its share, summing to 1", () => {
  const shares = new Router(new HashRing(["a", "b", "c"])).ringShares();
  assertEquals([...shares.keys()], ["a", "b", "c"]);
  const total = [...shares.values()].reduce((s, x) => s + x, 0);
  assertTrue(Math.abs(total - 1) < 1e-12, `total ${total}`);
});
