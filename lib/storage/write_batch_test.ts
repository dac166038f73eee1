import { utf8 } from "../common/bytes.ts";
import { CorruptionError, InvalidArgumentError } from "../common/errors.ts";
import { maxKeyBytes } from "../common/limits.ts";
import { assertEquals, assertThrows } from "../common/test_helpers.ts";
import { EntryKind } from "./internal_key.ts";
import {
  batchPayloadLength,
  decodeBatchPayload,
  WriteBatch,
  writeBatchPayload,
} from "./write_batch.ts";

Deno.test("write batch: payload round trip with assigned and explicit versions", () => {
  const b = new WriteBatch()
    .put(utf8("a"), utf8("1"))
    .put(utf8("b"), utf8("2"), { version: 77, expiresAtMs: 1_700_000_000_000 })
    .delete(utf8("c"));
  const n = batchPayloadLength(b, 5, 12);
  const out = new Uint8Array(n);
  assertEquals(writeBatchPayload(out, 0, b, 5, 12), n);
  const d = decodeBatchPayload(out, "wal", 0);
  assertEquals(d.appliedIndex, 12);
  assertEquals(
    d.ops.map((o) => [o.kind, new TextDecoder().decode(o.key), o.version, o.expiresAtMs]),
    [
      [EntryKind.put, "a", 5, 0],
      [EntryKind.putWithExpiry, "b", 77, 1_700_000_000_000],
      [EntryKind.delete, "c", 5, 0],
    ],
  );
  assertEquals(b.maxExplicitVersion, 77);
  assertEquals(b.needsVersion, true);
});

Deno.test("write batch: limits and bad input are InvalidArgument", () => {
  assertThrows(() => new WriteBatch().put(new Uint8Array(0), utf8("v")), InvalidArgumentError);
  assertThrows(
    () => new WriteBatch().put(new Uint8Array(maxKeyBytes + 1), utf8("v")),
    InvalidArgumentError,
    "maxKeyBytes",
  );
  assertThrows(() => new WriteBatch().delete(utf8("k"), { version: 0 }), InvalidArgumentError);
  assertThrows(
    () => new WriteBatch().put(utf8("k"), utf8("v"), { version: 1.5 }),
    InvalidArgumentError,
  );
});

Deno.test("write batch: a malformed payload is Corruption", () => {
  assertThrows(
    () => decodeBatchPayload(new Uint8Array([1, 0, 1, 9]), "wal", 40),
    CorruptionError,
    "at byte offset 40",
  );
  assertThrows(() => decodeBatchPayload(new Uint8Array([7]), "wal", 0), CorruptionError);
});
