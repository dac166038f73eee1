import { SeededRandom } from "./random.ts";
import { assertEquals } from "./test_helpers.ts";
import { PartialUnit } from "./partial_unit.ts";

/** Units of a 4-byte big-endian length head plus that many bytes, cut out of chunks. */
function decode(chunks: Uint8Array[]): Uint8Array[] {
  const p = new PartialUnit();
  const sizeAt = (b: Uint8Array, at: number) =>
    4 + (((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0);
  const units: Uint8Array[] = [];
  for (const chunk of chunks) {
    let pos = 0;
    while (p.pending && pos < chunk.length) {
      pos = p.fill(chunk, pos);
      if (!p.full) break;
      const size = sizeAt(p.bytes, 0);
      if (size > p.bytes.length) {
        p.grow(size);
        continue;
      }
      units.push(p.take());
    }
    while (!p.pending && pos < chunk.length) {
      if (chunk.length - pos < 4) {
        p.hold(chunk, pos, 4);
        break;
      }
      const size = sizeAt(chunk, pos);
      if (chunk.length - pos < size) {
        p.hold(chunk, pos, size);
        break;
      }
      units.push(chunk.slice(pos, pos + size));
      pos += size;
    }
    chunk.fill(0); // held bytes must be copies
  }
  return units;
}

Deno.test("partial unit: units split anywhere over chunks of any size come out whole", () => {
  const r = new SeededRandom(3);
  const want: Uint8Array[] = [];
  for (let i = 0; i < 50; i++) {
    const n = i % 10 === 0 ? 20_000 : r.nextInt(40);
    const u = new Uint8Array(4 + n);
    new DataView(u.buffer).setUint32(0, n);
    for (let j = 4; j < u.length; j++) u[j] = r.nextInt(256);
    want.push(u);
  }
  const stream = new Uint8Array(want.reduce((n, u) => n + u.length, 0));
  let at = 0;
  for (const u of want) {
    stream.set(u, at);
    at += u.length;
  }
  for (let seed = 1; seed <= 20; seed++) {
    const cr = new SeededRandom(seed);
    const chunks: Uint8Array[] = [];
    for (let from = 0; from < stream.length;) {
      const n = 1 + (cr.nextInt(3) === 0 ? cr.nextInt(9_000) : cr.nextInt(7));
      chunks.push(stream.slice(from, from + n));
      from += n;
    }
    assertEquals(decode(chunks), want, `seed ${seed}`);
  }
});
