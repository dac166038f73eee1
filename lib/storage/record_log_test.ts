import { utf8 } from "../common/bytes.ts";
import { CorruptionError } from "../common/errors.ts";
import { assertEquals, assertThrows } from "../common/test_helpers.ts";
import { frameRecord, frameSyncMarker, scanRecords } from "./record_log.ts";

function log(...payloads: string[]): Uint8Array {
  const parts = payloads.map((p) => frameRecord(utf8(p)));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

Deno.test("record log: reads back every record with its offset", () => {
  const buf = log("one", "two", "three");
  const s = scanRecords(buf, "f");
  assertEquals(s.records.map((r) => [r.offset, new TextDecoder().decode(r.payload)]), [
    [0, "one"],
    [11, "two"],
    [22, "three"],
  ]);
  assertEquals([s.tornTail, s.validEndBytes], [false, buf.length]);
});

Deno.test("record log: a cut or damaged tail is torn; damage before valid records is corruption", () => {
  const buf = log("one", "two", "three");
  for (let cut = 22; cut < buf.length; cut++) {
    const s = scanRecords(buf.subarray(0, cut), "f");
    assertEquals([s.records.length, s.tornTail, s.validEndBytes], [2, cut > 22, 22]);
  }
  const flipped = buf.slice();
  flipped[14] ^= 1;
  const e = assertThrows(() => scanRecords(flipped, "f"), CorruptionError);
  assertEquals([e.file, e.offset], ["f", 11]);
  // A complete tail record with a bad checksum: torn for the WAL, corruption for the manifest.
  const tail = buf.slice();
  tail[buf.length - 1] ^= 1;
  assertEquals(scanRecords(tail, "f").tornTail, true);
  assertThrows(() => scanRecords(tail, "f", true), CorruptionError);
  // Zero-filled garbage is never a record.
  const zeros = new Uint8Array(buf.length + 32);
  zeros.set(buf);
  assertEquals(scanRecords(zeros, "f").records.length, 3);
});

/** A file written in place over preallocated space: a sync marker before each write's records. */
function markedLog(writes: string[][], durableAt: (writeIndex: number, offset: number) => number) {
  const parts: Uint8Array[] = [];
  let at = 0;
  const starts: number[] = [];
  for (const [i, w] of writes.entries()) {
    const m = frameSyncMarker(durableAt(i, at));
    parts.push(m);
    at += m.length;
    for (const p of w) {
      const r = frameRecord(utf8(p));
      starts.push(at);
      parts.push(r);
      at += r.length;
    }
  }
  const out = new Uint8Array(at + 64); // Preallocated zeros after the data.
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return { bytes: out, starts, end: at };
}

Deno.test("record log: markers are skipped, and unused preallocated zeros are a clean end", () => {
  const { bytes, starts, end } = markedLog([["one"], ["two", "three"]], (_, at) => at);
  const s = scanRecords(bytes, "f");
  assertEquals(s.records.map((r) => new TextDecoder().decode(r.payload)), ["one", "two", "three"]);
  assertEquals(s.records.map((r) => r.offset), starts);
  assertEquals([s.markers, s.zeroTail, s.tornTail, s.validEndBytes], [true, true, false, end]);
  assertEquals(scanRecords(log("one"), "f").markers, false);
});

Deno.test("record log: with markers, a bad record is torn unless a later marker says it was durable", () => {
  // Write 0 synced; writes 1 and 2 were in flight (their markers say only write 0 is durable).
  const durableEnd = markedLog([["a"]], () => 0).end;
  const inFlight = markedLog([["a"], ["b"], ["c"]], (i) => (i === 0 ? 0 : durableEnd));
  // The sector holding "b" never reached the disk, the one holding "c" did: a torn write.
  const torn = inFlight.bytes.slice();
  torn.fill(0, inFlight.starts[1], inFlight.starts[1] + 9);
  const s = scanRecords(torn, "f");
  assertEquals([s.records.length, s.tornTail, s.validEndBytes], [1, true, inFlight.starts[1]]);
  // A later write began after "b" was durable (its marker says so): damage to "b" is corruption.
  const synced = markedLog([["a"], ["b"], ["c"]], (_, at) => at);
  const damaged = synced.bytes.slice();
  damaged[synced.starts[1] + 8] ^= 1; // The payload of "b".
  const e = assertThrows(() => scanRecords(damaged, "f"), CorruptionError);
  assertEquals([e.file, e.offset], ["f", synced.starts[1]]);
});
