import { utf8 } from "../common/bytes.ts";
import { CorruptionError } from "../common/errors.ts";
import { assertEquals, assertThrows } from "../common/test_helpers.ts";
import { frameRecord, scanRecords } from "./record_log.ts";

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
