/**
 * Specification tests for the consistent-hash ring: exact positions (so every
 * process agrees), clockwise ownership, replica lists, deterministic ties, and
 * the measured load skew and key movement over 1,000,000 random keys.
 *
 * @module
 */

import { assertEquals, assertThrows, assertTrue } from "../common/test_helpers.ts";
import { SeededRandom, testSeed } from "../common/random.ts";
import { utf8 } from "../common/bytes.ts";
import {
  defaultReplicationFactor,
  defaultVirtualNodesPerNode,
  HashRing,
  ringPosition,
  ringSpaceSize,
  type VirtualNode,
  virtualNodePosition,
} from "./hash_ring.ts";

const fiveNodes = ["node1", "node2", "node3", "node4", "node5"];

/** Owner by brute force: the first point clockwise, ties to the smaller node id. */
function bruteOwner(points: VirtualNode[], position: number): string {
  let best: VirtualNode | undefined;
  for (const p of points) {
    if (p.position < position) continue;
    if (
      best === undefined || p.position < best.position ||
      (p.position === best.position && p.nodeId < best.nodeId)
    ) best = p;
  }
  if (best !== undefined) return best.nodeId;
  return bruteOwner(points, 0);
}

// 1,000,000 keys hashed once (about 3 s with node:crypto) and shared by the
// skew and movement tests, which then only do binary searches.
const bulkKeyCount = 1_000_000;
let bulk: { seed: number; positions: Uint32Array } | undefined;
function bulkPositions(): { seed: number; positions: Uint32Array } {
  if (bulk !== undefined) return bulk;
  const seed = testSeed();
  const rng = new SeededRandom(seed);
  const key = new Uint8Array(16);
  const view = new DataView(key.buffer);
  const positions = new Uint32Array(bulkKeyCount);
  const started = performance.now();
  for (let i = 0; i < bulkKeyCount; i++) {
    for (let w = 0; w < 16; w += 4) view.setUint32(w, rng.nextU32());
    positions[i] = ringPosition(key);
  }
  console.log(
    `hashed ${bulkKeyCount} random 16-byte keys in ${
      (performance.now() - started).toFixed(0)
    } ms ` +
      `(SEED=${seed} replays)`,
  );
  bulk = { seed, positions };
  return bulk;
}

Deno.test("positions are the first 4 bytes of SHA-256, big-endian (literals checked with sha256sum)", () => {
  // `printf 'node1#0' | sha256sum` = dec6af8a…; `printf hello | sha256sum` = 2cf24dba…
  assertEquals(virtualNodePosition("node1", 0), 0xdec6af8a);
  assertEquals(virtualNodePosition("node1", 0), 3737563018);
  assertEquals(ringPosition("hello"), 0x2cf24dba);
  assertEquals(ringPosition(new Uint8Array(0)), 0xe3b0c442);
  assertEquals(ringPosition(utf8("hello")), ringPosition("hello"), "strings are their UTF-8 bytes");
  assertEquals(virtualNodePosition("node1", 149), ringPosition("node1#149"));
});

Deno.test("the defaults are 150 virtual nodes per node and replication factor 3", () => {
  const ring = new HashRing(fiveNodes);
  assertEquals(defaultVirtualNodesPerNode, 150);
  assertEquals(defaultReplicationFactor, 3);
  assertEquals(ring.virtualNodesPerNode, 150);
  assertEquals(ring.replicationFactor, 3);
  assertEquals(ring.virtualNodes().length, 5 * 150);
  const node1 = ring.virtualNodes().filter((v) => v.nodeId === "node1");
  assertEquals(node1.map((v) => v.index).sort((a, b) => a - b), [...Array(150).keys()]);
  assertTrue(node1.every((v) => v.position === virtualNodePosition("node1", v.index)));
});

Deno.test("positions are identical in a separate process", async () => {
  const moduleUrl = new URL("./hash_ring.ts", import.meta.url).href;
  const script = `
    import { HashRing, ringPosition } from ${JSON.stringify(moduleUrl)};
    const ring = new HashRing(["node1", "node2", "node3", "node4", "node5"]);
    const keys = Array.from({ length: 200 }, (_, i) => "key-" + i);
    console.log(JSON.stringify({
      points: ring.virtualNodes().map((v) => v.position + ":" + v.nodeId + "#" + v.index),
      keys: keys.map((k) => ringPosition(k) + ":" + ring.preferenceList(k).join(",")),
    }));
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-config", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertTrue(out.success, `child failed: ${new TextDecoder().decode(out.stderr)}`);
  const child = JSON.parse(new TextDecoder().decode(out.stdout));
  const ring = new HashRing(fiveNodes);
  assertEquals(
    child.points,
    ring.virtualNodes().map((v) => `${v.position}:${v.nodeId}#${v.index}`),
  );
  const keys = Array.from({ length: 200 }, (_, i) => `key-${i}`);
  assertEquals(
    child.keys,
    keys.map((k) => `${ringPosition(k)}:${ring.preferenceList(k).join(",")}`),
  );
});

Deno.test("the owner is the first virtual node clockwise, wrapping past 2^32 - 1", () => {
  const ring = new HashRing(fiveNodes);
  const points = ring.virtualNodes();
  const rng = new SeededRandom(7);
  const probes = [0, 1, ringSpaceSize - 1, points[0].position, points[points.length - 1].position];
  for (const p of points.slice(0, 50)) probes.push(p.position, (p.position + 1) >>> 0);
  for (let i = 0; i < 500; i++) probes.push(rng.nextU32());
  for (const position of probes) {
    assertEquals(ring.ownerOfPosition(position), bruteOwner(points, position), `at ${position}`);
  }
  // Past the last point, ownership wraps to the first point on the ring.
  const last = points[points.length - 1].position;
  if (last < ringSpaceSize - 1) assertEquals(ring.ownerOfPosition(last + 1), points[0].nodeId);
  assertEquals(ring.ownerOf("hello"), ring.ownerOfPosition(0x2cf24dba));
});

Deno.test("virtual nodes on the same position are ordered by node id, whatever the insertion order", () => {
  // Found by search: SHA-256 of both starts 01785e65 (checked with sha256sum).
  assertEquals(virtualNodePosition("tie140", 43), 0x01785e65);
  assertEquals(virtualNodePosition("tie768", 56), 0x01785e65);
  for (const order of [["tie140", "tie768"], ["tie768", "tie140"]]) {
    const ring = new HashRing(order);
    const tied = ring.virtualNodes().filter((v) => v.position === 0x01785e65);
    assertEquals(tied.map((v) => `${v.nodeId}#${v.index}`), ["tie140#43", "tie768#56"]);
    assertEquals(ring.ownerOfPosition(0x01785e65), "tie140");
    assertEquals(ring.preferenceListOfPosition(0x01785e65), ["tie140", "tie768"]);
  }
  assertEquals(
    new HashRing(["b", "c", "a"]).virtualNodes(),
    new HashRing(["a", "b", "c"]).virtualNodes(),
  );
});

Deno.test("replicas are distinct physical nodes in clockwise order after the owner", () => {
  const ring = new HashRing(fiveNodes);
  const points = ring.virtualNodes();
  const rng = new SeededRandom(11);
  for (let i = 0; i < 300; i++) {
    const position = rng.nextU32();
    const list = ring.preferenceListOfPosition(position);
    assertEquals(list.length, 3);
    assertEquals(new Set(list).size, 3, "distinct");
    // Brute force: walk points clockwise from the owner, keeping first sightings.
    const start = points.findIndex((p) => p.position >= position);
    const walk: string[] = [];
    for (let s = 0; walk.length < 3; s++) {
      const id = points[((start === -1 ? 0 : start) + s) % points.length].nodeId;
      if (!walk.includes(id)) walk.push(id);
    }
    assertEquals(list, walk);
  }
  assertEquals(ring.preferenceList("k", 5).length, 5);
  assertEquals(
    new Set(ring.preferenceList("k", 9)).size,
    5,
    "asking for more gives every node once",
  );
});

Deno.test("replication is capped by the node count and an empty ring places nothing", () => {
  assertEquals(new HashRing([]).ownerOf("k"), undefined);
  assertEquals(new HashRing([]).preferenceList("k"), []);
  assertEquals(new HashRing(["solo"]).preferenceList("k"), ["solo"]);
  assertEquals(new HashRing(["a", "b"]).preferenceList("k").length, 2);
  assertEquals(new HashRing(["a", "b", "c", "d"]).preferenceList("k").length, 3);
  assertEquals(
    new HashRing(["a", "b", "c"], { replicationFactor: 1 }).preferenceList("k").length,
    1,
  );
});

Deno.test("membership changes are validated and reversible", () => {
  const ring = new HashRing(fiveNodes);
  const before = ring.virtualNodes();
  assertThrows(() => ring.addNode("node1"), RangeError, "already on the ring");
  assertThrows(() => ring.removeNode("node9"), RangeError, "not on the ring");
  assertThrows(() => ring.addNode(""), RangeError, "non-empty");
  assertThrows(() => new HashRing([], { virtualNodesPerNode: 0 }), RangeError);
  assertThrows(() => new HashRing([], { replicationFactor: 0 }), RangeError);
  ring.addNode("node6");
  assertEquals(ring.size, 6);
  assertTrue(ring.hasNode("node6"));
  ring.removeNode("node6");
  assertEquals(ring.nodes, fiveNodes);
  assertEquals(ring.virtualNodes(), before);
});

Deno.test("ownership shares cover the whole ring exactly", () => {
  assertEquals(new HashRing(["solo"]).describeOwnership(), [
    { nodeId: "solo", positions: ringSpaceSize, share: 1 },
  ]);
  const shares = new HashRing(fiveNodes).describeOwnership();
  assertEquals(shares.map((s) => s.nodeId), fiveNodes);
  assertEquals(shares.reduce((sum, s) => sum + s.positions, 0), ringSpaceSize);
  assertEquals(new HashRing([]).describeOwnership(), []);
});

Deno.test("load skew over 1,000,000 random keys at 5 nodes, as measured", () => {
  const { positions } = bulkPositions();
  const ring = new HashRing(fiveNodes);
  const counts = new Map<string, number>(fiveNodes.map((n) => [n, 0]));
  for (let i = 0; i < positions.length; i++) {
    const owner = ring.ownerOfPosition(positions[i])!;
    counts.set(owner, counts.get(owner)! + 1);
  }
  const ideal = 1 / 5;
  const shares = fiveNodes.map((n) => counts.get(n)! / positions.length);
  const max = Math.max(...shares);
  const min = Math.min(...shares);
  console.log(
    `5 nodes x 150 vnodes, ${positions.length} keys: shares ${
      fiveNodes.map((n, i) => `${n}=${(shares[i] * 100).toFixed(2)}%`).join(" ")
    }; max ${(max * 100).toFixed(2)}% (${signedPct(max / ideal - 1)} vs ideal 20%), min ${
      (min * 100).toFixed(2)
    }% (${signedPct(min / ideal - 1)})`,
  );
  // Measured: max ~23.3 % (+16.6 % of ideal), min ~18.3 % (-8.7 %). The seed's
  // "within ±10 %" does not hold for 150 vnodes at 5 nodes; we bound what we see.
  assertTrue(max / ideal - 1 < 0.18, `max share ${max} exceeds +18 % of ideal`);
  assertTrue(1 - min / ideal < 0.11, `min share ${min} is below -11 % of ideal`);
  // Key counts agree with the analytic shares (1M samples: sd ~0.04 points).
  for (const s of ring.describeOwnership()) {
    const observed = counts.get(s.nodeId)! / positions.length;
    assertTrue(Math.abs(observed - s.share) < 0.003, `${s.nodeId}: ${observed} vs ${s.share}`);
  }
});

Deno.test("adding a 6th node moves about 1/6 of the keys, all of them to the new node", () => {
  const { positions } = bulkPositions();
  const ring = new HashRing(fiveNodes);
  const before = positions.map((p) => fiveNodes.indexOf(ring.ownerOfPosition(p)!));
  ring.addNode("node6");
  let moved = 0;
  for (let i = 0; i < positions.length; i++) {
    const owner = ring.ownerOfPosition(positions[i])!;
    if (owner === fiveNodes[before[i]]) continue;
    moved++;
    assertEquals(owner, "node6", `key ${i} moved between old nodes`);
  }
  const fraction = moved / positions.length;
  const node6Share = ring.describeOwnership().find((s) => s.nodeId === "node6")!.share;
  console.log(
    `adding node6: ${moved} of ${positions.length} keys moved (${pct(fraction)}; ideal 1/6 = ` +
      `16.67 %, node6's ring share ${pct(node6Share)}), all to node6`,
  );
  assertTrue(Math.abs(fraction - node6Share) < 0.003, "moved fraction matches node6's share");
  assertTrue(fraction > 0.13 && fraction < 0.2, `moved fraction ${fraction} is not about 1/6`);
});

Deno.test("removing a node moves only that node's keys", () => {
  const { positions } = bulkPositions();
  const ring = new HashRing(fiveNodes);
  const before = positions.map((p) => fiveNodes.indexOf(ring.ownerOfPosition(p)!));
  const node3Share = ring.describeOwnership().find((s) => s.nodeId === "node3")!.share;
  ring.removeNode("node3");
  let moved = 0;
  for (let i = 0; i < positions.length; i++) {
    const owner = ring.ownerOfPosition(positions[i])!;
    if (owner === fiveNodes[before[i]]) continue;
    moved++;
    assertEquals(fiveNodes[before[i]], "node3", `key ${i} moved though its owner stayed`);
  }
  const fraction = moved / positions.length;
  console.log(
    `removing node3: ${moved} keys moved (${pct(fraction)}; node3's share was ${pct(node3Share)})`,
  );
  assertTrue(Math.abs(fraction - node3Share) < 0.003, "exactly node3's keys moved");
});

/** A fraction as a percentage, e.g. 0.1667 -> "16.67 %". */
function pct(x: number): string {
  return `${(x * 100).toFixed(2)} %`;
}

/** A relative deviation with its sign, e.g. 0.166 -> "+16.60 %". */
function signedPct(x: number): string {
  return `${x >= 0 ? "+" : ""}${pct(x)}`;
}
