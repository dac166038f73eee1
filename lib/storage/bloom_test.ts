import { utf8 } from "../common/bytes.ts";
import { SeededRandom } from "../common/random.ts";
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { bloomHash, bloomMayContain, buildBloom, optimalProbes } from "./bloom.ts";

Deno.test("bloom: optimal k for 10 bits per key is 7", () => {
  assertEquals(optimalProbes(10), 7);
  assertEquals(optimalProbes(1), 1);
});

Deno.test("bloom (seed): never a false negative; measured FPR < 2 % (target ~1 %)", () => {
  const r = new SeededRandom(99);
  const members = new Set<string>();
  while (members.size < 10_000) members.add(`member-${r.nextU32()}-${r.nextU32()}`);
  const filter = buildBloom([...members].map((k) => bloomHash(utf8(k))), 10);
  for (const k of members) {
    assertTrue(bloomMayContain(filter, bloomHash(utf8(k))), `false negative ${k}`);
  }
  let falsePositives = 0;
  const probes = 100_000;
  for (let i = 0; i < probes; i++) {
    const k = `other-${r.nextU32()}-${i}`;
    if (bloomMayContain(filter, bloomHash(utf8(k)))) falsePositives++;
  }
  const fpr = falsePositives / probes;
  assertTrue(fpr < 0.02, `FPR ${fpr}`);
  assertTrue(fpr <= 0.012, `FPR ${fpr} should be near 1 %`);
});

Deno.test("bloom: tiny filters still have no false negatives", () => {
  for (let n = 0; n < 20; n++) {
    const hashes = Array.from({ length: n }, (_, i) => bloomHash(utf8(`k${i}`)));
    const f = buildBloom(hashes, 10);
    for (const h of hashes) assertTrue(bloomMayContain(f, h));
  }
});
