import { assertEquals, assertThrows } from "../common/test_helpers.ts";
import { DecodeError, utf8 } from "../common/bytes.ts";
import { SeededRandom } from "../common/random.ts";
import {
  encodeConnectionPreamble,
  encodeFrame,
  type PeerFrame,
  PeerFrameDecoder,
  PeerFrameKind,
} from "./peer_frame.ts";

const frames: PeerFrame[] = [
  { kind: PeerFrameKind.Batch, messages: [utf8("m1"), new Uint8Array(), utf8("third message")] },
  { kind: PeerFrameKind.Batch, messages: [] },
  { kind: PeerFrameKind.Refuse, reason: "cluster id mismatch" },
  { kind: PeerFrameKind.SnapshotBegin, message: utf8("raft snapshot message"), revision: 1234 },
  {
    kind: PeerFrameKind.SnapshotData,
    firstRecord: 10,
    count: 2,
    crc32: 0xdeadbeef,
    records: utf8("rec"),
  },
  { kind: PeerFrameKind.SnapshotEnd, totalRecords: 12 },
  { kind: PeerFrameKind.SnapshotAck, ok: true, recordsHeld: 12, reason: "" },
];

function stream(): Uint8Array {
  const parts = [encodeConnectionPreamble("c1", "n1"), ...frames.map(encodeFrame)];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

Deno.test("peer frames decode the same whatever way the stream is split", () => {
  const bytes = stream();
  const expected = [{ kind: PeerFrameKind.Hello, clusterId: "c1", from: "n1" }, ...frames];
  for (let split = 0; split <= bytes.length; split++) {
    const d = new PeerFrameDecoder(true);
    const got = [...d.push(bytes.slice(0, split)), ...d.push(bytes.slice(split))];
    assertEquals(got, expected, `split at ${split}`);
  }
  const d = new PeerFrameDecoder(true);
  const oneByOne: PeerFrame[] = [];
  for (const b of bytes) oneByOne.push(...d.push(new Uint8Array([b])));
  assertEquals(oneByOne, expected);
});

Deno.test("garbage, a wrong version and oversized lengths are rejected", () => {
  assertThrows(
    () => new PeerFrameDecoder(true).push(utf8("GET / HTTP/1.1\r\n")),
    DecodeError,
    "not a rustkvd peer",
  );
  assertThrows(
    () => new PeerFrameDecoder(true).push(new Uint8Array([0x52, 0x4b, 0x56, 0x52, 9])),
    DecodeError,
    "version 9",
  );
  assertThrows(
    () => new PeerFrameDecoder(false).push(new Uint8Array([0xff, 0xff, 0xff, 0xff, 2])),
    DecodeError,
    "length",
  );
  assertThrows(
    () => new PeerFrameDecoder(false).push(new Uint8Array([0, 0, 0, 1, 77])),
    DecodeError,
    "unknown peer frame kind 77",
  );
  const truncatedBody = new Uint8Array([0, 0, 0, 3, PeerFrameKind.Batch, 5, 1]);
  assertThrows(() => new PeerFrameDecoder(false).push(truncatedBody), DecodeError);
});

Deno.test("peer frames decode across many chunks, a large frame spread over dozens", () => {
  const big: PeerFrame = {
    kind: PeerFrameKind.Batch,
    messages: [new Uint8Array(200_000).map((_, i) => i & 0xff), utf8("tail")],
  };
  const parts = [
    encodeConnectionPreamble("c1", "n1"),
    ...frames.map(encodeFrame),
    encodeFrame(big),
  ];
  parts.push(...frames.map(encodeFrame));
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  const expected = [
    { kind: PeerFrameKind.Hello, clusterId: "c1", from: "n1" },
    ...frames,
    big,
    ...frames,
  ];
  for (let seed = 1; seed <= 30; seed++) {
    const r = new SeededRandom(seed);
    const d = new PeerFrameDecoder(true);
    const got: PeerFrame[] = [];
    for (let from = 0; from < bytes.length;) {
      // Mostly small chunks, sometimes a large one: heads and bodies split anywhere.
      const n = 1 + (r.nextInt(4) === 0 ? r.nextInt(70_000) : r.nextInt(12));
      // A fresh copy per chunk, reused afterwards like a socket buffer might be.
      const chunk = bytes.slice(from, Math.min(bytes.length, from + n));
      got.push(...d.push(chunk));
      chunk.fill(0);
      from += n;
    }
    assertEquals(got, expected, `seed ${seed}`);
    assertEquals(d.consumed, bytes.length);
  }
});

Deno.test("an oversized length split across chunks is reported at the frame's offset", () => {
  const d = new PeerFrameDecoder(false);
  const ok = encodeFrame({ kind: PeerFrameKind.Batch, messages: [] });
  assertEquals(d.push(ok.subarray(0, ok.length - 1)).length, 0);
  assertEquals(d.push(ok.subarray(ok.length - 1)).length, 1);
  d.push(new Uint8Array([0xff, 0xff]));
  const e = assertThrows(() => d.push(new Uint8Array([0xff, 0xff, 2])), DecodeError, "length");
  assertEquals((e as DecodeError).offset, ok.length);
});

Deno.test("a Hello carries the sender's vote-quiet period; one from an older sender has none", () => {
  const withQuiet = new PeerFrameDecoder(true).push(encodeConnectionPreamble("c1", "n2", 891));
  assertEquals(withQuiet, [{
    kind: PeerFrameKind.Hello,
    clusterId: "c1",
    from: "n2",
    voteQuietMs: 891,
  }]);
  const older = new PeerFrameDecoder(true).push(encodeConnectionPreamble("c1", "n2"));
  assertEquals(older, [{ kind: PeerFrameKind.Hello, clusterId: "c1", from: "n2" }]);
  assertEquals(older[0].kind === PeerFrameKind.Hello && older[0].voteQuietMs, undefined);
});
