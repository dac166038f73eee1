import { compareBytes } from "../common/bytes.ts";
import { SeededRandom } from "../common/random.ts";
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import {
  compareEntries,
  decodeInternalKey,
  encodeInternalKey,
  maxVersion,
} from "./internal_key.ts";

function randomKey(r: SeededRandom): Uint8Array {
  const k = new Uint8Array(r.nextInt(6));
  // Mostly 0x00, 0x01, 0xff and small bytes: the cases escaping must get right.
  const alphabet = [0x00, 0x01, 0x02, 0xfe, 0xff, 0x61];
  for (let i = 0; i < k.length; i++) k[i] = alphabet[r.nextInt(alphabet.length)];
  return k;
}

Deno.test("internal key: bytewise order = key ascending, version descending", () => {
  const r = new SeededRandom(42);
  const versions = [0, 1, 2, 255, 256, 65535, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 7, maxVersion];
  for (let i = 0; i < 20_000; i++) {
    const a = randomKey(r);
    const b = randomKey(r);
    const va = versions[r.nextInt(versions.length)];
    const vb = versions[r.nextInt(versions.length)];
    const byBytes = Math.sign(compareBytes(encodeInternalKey(a, va), encodeInternalKey(b, vb)));
    const byModel = Math.sign(compareEntries(a, va, b, vb));
    assertEquals(byBytes, byModel, `keys ${a} @${va} vs ${b} @${vb}`);
  }
});

Deno.test("internal key: round trip, including zero bytes", () => {
  const r = new SeededRandom(7);
  for (let i = 0; i < 2_000; i++) {
    const k = randomKey(r);
    const v = r.nextInt(2 ** 31) * 4096 + r.nextInt(4096);
    const d = decodeInternalKey(encodeInternalKey(k, v));
    assertEquals([...d.key], [...k]);
    assertEquals(d.version, v);
  }
});

Deno.test("internal key: a prefix key sorts before its extensions at any version", () => {
  const a = encodeInternalKey(new Uint8Array([0x61]), 0);
  const b = encodeInternalKey(new Uint8Array([0x61, 0x00]), maxVersion);
  assertTrue(compareBytes(a, b) < 0);
});
