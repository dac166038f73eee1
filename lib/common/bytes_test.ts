import { assertEquals, assertThrows, assertTrue } from "./test_helpers.ts";
import {
  ByteReader,
  byteString,
  ByteWriter,
  compareBytes,
  concatBytes,
  DecodeError,
  equalBytes,
  fromUtf8,
  hasPrefix,
  prefixEnd,
  utf8,
  uvarintLength,
} from "./bytes.ts";
import { SeededRandom } from "./random.ts";

Deno.test("compareBytes orders lexicographically, shorter prefix first", () => {
  assertTrue(compareBytes(utf8("a"), utf8("b")) < 0);
  assertTrue(compareBytes(utf8("ab"), utf8("a")) > 0);
  assertTrue(compareBytes(utf8("a"), utf8("ab")) < 0);
  assertEquals(compareBytes(utf8("abc"), utf8("abc")), 0);
  assertTrue(compareBytes(new Uint8Array([0xff]), new Uint8Array([0x00, 0x01])) > 0);
  assertTrue(equalBytes(utf8("xy"), utf8("xy")));
  assertTrue(!equalBytes(utf8("xy"), utf8("xz")));
});

Deno.test("prefixEnd bounds exactly the keys with the prefix", () => {
  assertEquals(prefixEnd(utf8("user:")), utf8("user;"));
  assertEquals(prefixEnd(new Uint8Array([0x61, 0xff, 0xff])), new Uint8Array([0x62]));
  assertEquals(prefixEnd(new Uint8Array([0xff])), undefined);
  assertEquals(prefixEnd(new Uint8Array()), undefined);
  const end = prefixEnd(utf8("user:"))!;
  assertTrue(hasPrefix(utf8("user:zzzz"), utf8("user:")));
  assertTrue(compareBytes(utf8("user:\xff\xff"), end) < 0);
});

Deno.test("prefixEnd never mutates its argument, even a Node Buffer (whose slice is a view)", async () => {
  const { Buffer } = await import("node:buffer");
  const prefix = Buffer.from("user:");
  const end = prefixEnd(prefix)!;
  assertEquals(new TextDecoder().decode(prefix), "user:");
  assertEquals(new TextDecoder().decode(end), "user;");
});

Deno.test("fixed-width integers round-trip and encode big-endian", () => {
  const w = new ByteWriter(1);
  w.putU8(7).putU16(0x1234).putU32(0xdeadbeef).putU64(0x0102030405060708n);
  const bytes = w.finish();
  assertEquals(Array.from(bytes.subarray(1, 3)), [0x12, 0x34]);
  assertEquals(Array.from(bytes.subarray(7, 15)), [1, 2, 3, 4, 5, 6, 7, 8]);
  const r = new ByteReader(bytes);
  assertEquals(r.u8(), 7);
  assertEquals(r.u16(), 0x1234);
  assertEquals(r.u32(), 0xdeadbeef);
  assertEquals(r.u64(), 0x0102030405060708n);
  r.expectEnd();
});

Deno.test("uvarint round-trips over the whole safe integer range", () => {
  const rnd = new SeededRandom(42);
  const values = [0, 1, 127, 128, 255, 16383, 16384, 2 ** 32, Number.MAX_SAFE_INTEGER];
  for (let i = 0; i < 1000; i++) values.push(Math.floor(rnd.nextFloat() * Number.MAX_SAFE_INTEGER));
  const w = new ByteWriter();
  for (const v of values) w.putUvarint(v);
  const r = new ByteReader(w.finish());
  for (const v of values) assertEquals(r.uvarint(), v);
  r.expectEnd();
  assertEquals(uvarintLength(127), 1);
  assertEquals(uvarintLength(128), 2);
  assertThrows(() => new ByteWriter().putUvarint(-1), RangeError);
});

Deno.test("reader raises DecodeError on truncated or oversized input", () => {
  const w = new ByteWriter();
  w.putLengthPrefixed(utf8("hello")).putString("wörld");
  const bytes = w.finish();
  const r = new ByteReader(bytes);
  assertEquals(fromUtf8(r.lengthPrefixed()), "hello");
  assertEquals(r.string(), "wörld");
  assertThrows(
    () => new ByteReader(bytes.subarray(0, 3)).lengthPrefixed(),
    DecodeError,
    "truncated",
  );
  assertThrows(() => new ByteReader(bytes).lengthPrefixed(2), DecodeError, "exceeds the limit 2");
  assertThrows(() => new ByteReader(new Uint8Array([0x80, 0x80])).uvarint(), DecodeError);
  assertThrows(() => new ByteReader(new Uint8Array(10).fill(0xff)).uvarint(), DecodeError);
  assertThrows(() => new ByteReader(new Uint8Array([1])).expectEnd(), DecodeError, "trailing");
});

Deno.test("concatBytes and setU32At", () => {
  assertEquals(concatBytes(utf8("ab"), new Uint8Array(), utf8("c")), utf8("abc"));
  const w = new ByteWriter();
  w.putU32(0).putU8(9);
  w.setU32At(0, 0xabcdef01);
  assertEquals(new ByteReader(w.view()).u32(), 0xabcdef01);
});

Deno.test("u64 as a number: round trips safe integers, refuses larger ones on both sides", () => {
  const values = [0, 1, 0xffff_ffff, 0x1_0000_0000, 1_733_470_000_000, Number.MAX_SAFE_INTEGER];
  const w = new ByteWriter(8);
  for (const v of values) w.putU64Number(v);
  const bytes = w.finish();
  const r = new ByteReader(bytes);
  for (const v of values) assertEquals(r.u64Number(), v);
  // The same bytes as the BigInt writer: the formats on disk do not change.
  const big = new ByteWriter(8);
  for (const v of values) big.putU64(BigInt(v));
  assertEquals([...big.finish()], [...bytes]);
  assertThrows(() => new ByteWriter(8).putU64Number(-1), RangeError);
  assertThrows(() => new ByteWriter(8).putU64Number(2 ** 53), RangeError);
  const tooBig = new ByteWriter(8).putU64(2n ** 53n).finish();
  assertThrows(() => new ByteReader(tooBig).u64Number(), DecodeError);
});

Deno.test("putString: ASCII written char by char and other text as UTF-8, both length-prefixed", () => {
  const texts = ["", "req-7f3a-1", "x".repeat(200), "héllo", "日本", "a\u0000b"];
  const w = new ByteWriter(4);
  for (const t of texts) w.putString(t);
  const expected = new ByteWriter(4);
  for (const t of texts) expected.putLengthPrefixed(utf8(t));
  assertEquals([...w.finish()], [...expected.finish()]);
  const r = new ByteReader(w.finish());
  for (const t of texts) assertEquals(r.string(), t);
});

Deno.test("byteString: one char per byte, past 8 KiB too; different bytes give different strings", () => {
  for (const n of [0, 1, 8192, 8193, 20_000]) {
    const b = new Uint8Array(n).map((_, i) => (i * 7) & 255);
    const s = byteString(b);
    assertEquals(s.length, n);
    assertEquals([...s].every((c, i) => c.charCodeAt(0) === b[i]), true);
  }
  assertEquals(byteString(new Uint8Array([0x61, 0])) === byteString(new Uint8Array([0x61])), false);
});
