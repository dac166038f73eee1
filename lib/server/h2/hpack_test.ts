import { assertEquals, assertThrows, assertTrue } from "../../common/test_helpers.ts";
import { SeededRandom, testSeed } from "../../common/random.ts";
import {
  encodeHeaders,
  type HeaderField,
  HpackDecoder,
  HpackEncoder,
  HpackError,
  huffmanDecode,
  huffmanEncode,
} from "./hpack.ts";

function hex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, "");
  return Uint8Array.from(clean.match(/../g)!.map((b) => parseInt(b, 16)));
}

Deno.test("RFC 7541 C.4: three requests with Huffman strings share one dynamic table", () => {
  const decoder = new HpackDecoder();
  const first: HeaderField[] = [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
  ];
  assertEquals(decoder.decode(hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")), first);
  // 0xbe is dynamic index 62: the :authority inserted by the first block.
  assertEquals(decoder.decode(hex("8286 84be 5886 a8eb 1064 9cbf")), [
    ...first,
    ["cache-control", "no-cache"],
  ]);
  assertEquals(
    decoder.decode(hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf")),
    [
      [":method", "GET"],
      [":scheme", "https"],
      [":path", "/index.html"],
      [":authority", "www.example.com"],
      ["custom-key", "custom-value"],
    ],
  );
});

Deno.test("RFC 7541 C.2: literal fields with and without indexing, plain strings", () => {
  const decoder = new HpackDecoder();
  // C.2.1: literal with incremental indexing, new name.
  assertEquals(
    decoder.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572")),
    [["custom-key", "custom-header"]],
  );
  // The entry is now dynamic index 62.
  assertEquals(decoder.decode(hex("be")), [["custom-key", "custom-header"]]);
  // C.2.2: literal without indexing, indexed name (:path).
  assertEquals(decoder.decode(hex("040c 2f73 616d 706c 652f 7061 7468")), [
    [":path", "/sample/path"],
  ]);
});

Deno.test("the encoder's blocks decode to the same fields, repeatedly, without table state", () => {
  const fields: HeaderField[] = [
    [":status", "200"],
    ["content-type", "application/grpc"],
    ["grpc-status", "3"],
    ["grpc-message", "key is 5000 bytes, above the limit of 4096"],
    ["leader-hint", "node2@127.0.0.1:7002"],
    ["x-long", "v".repeat(300)],
  ];
  const decoder = new HpackDecoder();
  for (let i = 0; i < 3; i++) assertEquals(decoder.decode(encodeHeaders(fields)), fields);
});

Deno.test("Huffman coding round-trips every byte value (seeded)", () => {
  const seed = testSeed();
  const random = new SeededRandom(seed);
  for (let round = 0; round < 200; round++) {
    const bytes = new Uint8Array(random.nextInt(64));
    for (let i = 0; i < bytes.length; i++) bytes[i] = random.nextInt(256);
    assertEquals(huffmanDecode(huffmanEncode(bytes)), bytes, `SEED=${seed} round ${round}`);
  }
  // RFC 7541 C.4.1's string.
  assertEquals(
    new TextDecoder().decode(huffmanDecode(hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"))),
    "www.example.com",
  );
});

Deno.test("malformed header blocks are COMPRESSION errors, never a crash or a wrong field", () => {
  const cases: [string, Uint8Array, string][] = [
    ["index 0", hex("80"), "index 0"],
    ["index beyond both tables", hex("ff00"), "beyond the tables"],
    ["truncated integer", hex("ff"), "truncated integer"],
    ["string longer than the block", hex("4005 6162"), "truncated string"],
    ["Huffman padding of zeros", hex("4081 00 00"), "Huffman"],
    ["table size above the limit", hex("3fe2 1f"), "above the limit"],
    ["table size update after a field", hex("82 20"), "after a header field"],
    ["integer over 28 bits", hex("ff ffff ffff ff01"), "too large"],
  ];
  for (const [what, block, message] of cases) {
    const e = assertThrows(() => new HpackDecoder().decode(block), HpackError, message);
    assertTrue(e.message.length > 0, what);
  }
});

Deno.test("the dynamic table evicts oldest entries past its size and shrinks on update", () => {
  const decoder = new HpackDecoder(100);
  const literal = (name: string, value: string) =>
    Uint8Array.from([
      0x40,
      name.length,
      ...new TextEncoder().encode(name),
      value.length,
      ...new TextEncoder().encode(value),
    ]);
  decoder.decode(literal("aa", "1")); // 35 bytes
  decoder.decode(literal("bb", "2")); // 70 bytes
  decoder.decode(literal("cc", "3")); // 105 > 100: "aa" goes
  assertEquals(decoder.decode(hex("be bf")), [["cc", "3"], ["bb", "2"]]);
  assertThrows(() => decoder.decode(hex("c0")), HpackError, "beyond the tables");
  decoder.decode(hex("20")); // size 0 empties the table
  assertThrows(() => decoder.decode(hex("be")), HpackError, "beyond the tables");
});

Deno.test("the connection encoder indexes repeated fields: one byte each after first use", () => {
  const encoder = new HpackEncoder();
  const decoder = new HpackDecoder();
  const request: HeaderField[] = [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", "/rustkvd.KV/Put"],
    [":authority", "127.0.0.1:7001"],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
    ["grpc-timeout", "5000m"],
  ];
  const first = encoder.encode(request);
  assertEquals(decoder.decode(first), request);
  const second = encoder.encode(request);
  assertEquals(decoder.decode(second), request);
  // Six indexed fields (one byte each) and the timeout, a literal never indexed:
  // its type byte, then the name and the value, each after a length byte.
  assertEquals(second.length, 6 + 1 + (1 + "grpc-timeout".length) + (1 + "5000m".length));
  assertTrue(first.length > second.length * 2, `${first.length} vs ${second.length}`);
});

Deno.test("the connection encoder stays in step with a decoder through eviction and size updates (seeded)", () => {
  const seed = testSeed();
  const random = new SeededRandom(seed);
  const encoder = new HpackEncoder();
  const decoder = new HpackDecoder();
  const names = ["content-type", "x-a", "x-b", "grpc-status", "grpc-message", ":path", "x-big"];
  for (let block = 0; block < 2_000; block++) {
    if (block === 700) encoder.setMaxTableSize(300); // the peer shrinks its table
    if (block === 1_400) encoder.setMaxTableSize(0); // and then disables it
    const fields: HeaderField[] = [];
    for (let i = random.nextInt(6); i >= 0; i--) {
      const name = names[random.nextInt(names.length)];
      const value = name === "x-big"
        ? "z".repeat(100 + random.nextInt(300))
        : `v${random.nextInt(40)}`;
      fields.push([name, value]);
    }
    assertEquals(decoder.decode(encoder.encode(fields)), fields, `SEED=${seed} block ${block}`);
  }
});

Deno.test("frozen field lists reuse their encoding only while it stays valid (seeded)", () => {
  const seed = testSeed();
  const random = new SeededRandom(seed);
  const encoder = new HpackEncoder();
  const decoder = new HpackDecoder();
  const constants: readonly HeaderField[][] = [
    [[":status", "200"], ["content-type", "application/grpc"]],
    [["grpc-status", "0"]],
    [["grpc-status", "14"], ["x-leader", "n2"]],
  ];
  const frozen = constants.map((c) => Object.freeze(c.map((f) => Object.freeze(f) as HeaderField)));
  for (let block = 0; block < 3_000; block++) {
    if (block === 1_000) encoder.setMaxTableSize(120); // evicts entries the cache may name
    if (block === 2_000) encoder.setMaxTableSize(4096);
    let fields: readonly HeaderField[];
    if (random.nextInt(3) > 0) fields = frozen[random.nextInt(frozen.length)];
    else {
      const fresh: HeaderField[] = [];
      for (let i = random.nextInt(4); i >= 0; i--) {
        fresh.push([`x-${random.nextInt(30)}`, "v".repeat(1 + random.nextInt(60))]);
      }
      fields = fresh;
    }
    assertEquals(
      decoder.decode(encoder.encode(fields)),
      [...fields],
      `SEED=${seed} block ${block}`,
    );
  }
  // Steady state: the same frozen list, nothing inserted in between, is one indexed reference
  // per field (one byte for indexes below 127, more for an entry deep in the dynamic table).
  // (Every block goes to the decoder, in order: the first may insert what was evicted.)
  assertEquals(decoder.decode(encoder.encode(frozen[0])), [...frozen[0]], `SEED=${seed}`);
  const again = encoder.encode(frozen[0]);
  assertEquals(indexedReferences(again), frozen[0].length, `SEED=${seed} block ${[...again]}`);
  assertEquals(decoder.decode(again), [...frozen[0]], `SEED=${seed}`);
  const third = encoder.encode(frozen[0]);
  assertEquals([...third], [...again], `SEED=${seed}: the encoding is reused`);
  assertEquals(decoder.decode(third), [...frozen[0]], `SEED=${seed}`);
});

/** How many fields `block` holds if every one is an indexed reference (RFC 7541 6.1); -1 if not. */
function indexedReferences(block: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < block.length; n++) {
    if ((block[i] & 0x80) === 0) return -1;
    if ((block[i++] & 0x7f) === 0x7f) {
      while (i < block.length && (block[i] & 0x80) !== 0) i++; // continuation bytes
      i++; // the last one
    }
  }
  return n;
}

Deno.test("short header strings decode like the latin1 decoder, non-ASCII bytes included", () => {
  const decoder = new HpackDecoder();
  const bytes = [0x41, 0xe9, 0x80, 0x7e];
  const block = Uint8Array.from([0x00, 1, 0x61, bytes.length, ...bytes]);
  assertEquals(decoder.decode(block), [[
    "a",
    new TextDecoder("latin1").decode(Uint8Array.from(bytes)),
  ]]);
});
