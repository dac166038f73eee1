import { assertEquals, assertTrue } from "./test_helpers.ts";
import { allocBytes, copyBytes, maxPooledBytes } from "./byte_pool.ts";
import { joinForWrite } from "./bytes.ts";

Deno.test("pooled arrays are zeroed, never overlap, and large ones stand alone", () => {
  const arrays: Uint8Array[] = [];
  // Enough to cross several slabs.
  for (let i = 0; i < 2_000; i++) {
    const a = allocBytes(1 + (i % 97));
    assertTrue(a.every((b) => b === 0), "fresh bytes are zero");
    a.fill(i & 0xff);
    arrays.push(a);
  }
  for (let i = 0; i < arrays.length; i++) {
    assertTrue(arrays[i].every((b) => b === (i & 0xff)), `array ${i} was overwritten`);
  }
  const big = allocBytes(maxPooledBytes + 1);
  assertEquals([big.byteOffset, big.buffer.byteLength], [0, maxPooledBytes + 1]);
});

Deno.test("copyBytes copies: changing the source leaves the copy alone", () => {
  const source = Uint8Array.from([1, 2, 3]);
  const copy = copyBytes(source);
  source[0] = 9;
  assertEquals([...copy], [1, 2, 3]);
});

Deno.test("joinForWrite gives a socket bytes that own their buffer, in order", () => {
  const own = Uint8Array.from([1, 2]);
  assertEquals(joinForWrite([own]) === own, true);
  const pooled = copyBytes(Uint8Array.from([3, 4]));
  const lone = joinForWrite([pooled]);
  assertEquals([lone.byteOffset, lone.buffer.byteLength, ...lone], [0, 2, 3, 4]);
  assertEquals([...joinForWrite([own, pooled, Uint8Array.from([5])])], [1, 2, 3, 4, 5]);
});
