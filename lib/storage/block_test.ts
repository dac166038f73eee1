import { compareBytes, utf8 } from "../common/bytes.ts";
import { SeededRandom, testSeed } from "../common/random.ts";
import { assertEquals } from "../common/test_helpers.ts";
import { Block, BlockBuilder } from "./block.ts";

/** The first index whose key is >= target, by a linear walk. */
function lowerBound(keys: Uint8Array[], target: Uint8Array): number {
  let i = 0;
  while (i < keys.length && compareBytes(keys[i], target) < 0) i++;
  return i;
}

/**
 * Keys the way a node's tables mix them: a few short system keys before and
 * after a long run of user keys sharing a long prefix, plus keys that are
 * prefixes of others and keys with zero and 0xff bytes.
 */
function mixedKeys(r: SeededRandom): Uint8Array[] {
  const set = new Map<string, Uint8Array>();
  const add = (k: Uint8Array) => set.set(Array.from(k).join(","), k);
  const user = 10 + r.nextInt(300);
  for (let i = 0; i < user; i++) {
    add(utf8(`k/key:${String(r.nextInt(1_000_000)).padStart(12, "0")}`));
  }
  for (let i = r.nextInt(6); i > 0; i--) add(utf8(`\u0000r/req-${r.nextInt(100)}`));
  for (let i = r.nextInt(4); i > 0; i--) add(utf8(`z/${r.nextInt(10)}`));
  if (r.nextInt(2) === 0) add(utf8("k/key:"));
  if (r.nextInt(2) === 0) add(utf8("k/key:0000"));
  for (let i = r.nextInt(5); i > 0; i--) {
    const k = new Uint8Array(1 + r.nextInt(20));
    for (let j = 0; j < k.length; j++) k[j] = [0, 0xff, 0x6b, r.nextInt(256)][r.nextInt(4)];
    add(k);
  }
  return [...set.values()].sort(compareBytes);
}

/** Targets around the keys: each key, its prefixes, and the key with a byte changed or added. */
function targetsFor(keys: Uint8Array[], r: SeededRandom): Uint8Array[] {
  const out: Uint8Array[] = [new Uint8Array(0), new Uint8Array([0xff, 0xff])];
  for (const k of keys) {
    out.push(k, k.subarray(0, r.nextInt(k.length + 1)));
    const changed = k.slice();
    if (changed.length > 0) changed[r.nextInt(changed.length)] = r.nextInt(256);
    out.push(changed);
    const longer = new Uint8Array(k.length + 1);
    longer.set(k);
    longer[k.length] = r.nextInt(256);
    out.push(longer);
  }
  return out;
}

Deno.test("block: seek finds the first key >= any target, whatever keys the block mixes", () => {
  const seed = testSeed();
  const r = new SeededRandom(seed);
  for (let round = 0; round < 200; round++) {
    const keys = mixedKeys(r);
    const b = new BlockBuilder();
    for (const k of keys) b.add(k, new Uint8Array([round & 0xff]));
    const block = new Block(b.finish(), "test", 0);
    for (const t of targetsFor(keys, r)) {
      assertEquals(block.seek(t), lowerBound(keys, t), `seed ${seed} round ${round} target ${t}`);
    }
  }
});
