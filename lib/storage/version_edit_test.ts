import { utf8 } from "../common/bytes.ts";
import { CorruptionError } from "../common/errors.ts";
import { assertEquals, assertThrows } from "../common/test_helpers.ts";
import { encodeInternalKey } from "./internal_key.ts";
import {
  decodeEdit,
  describeEdit,
  encodeEdit,
  makeFileMeta,
  type VersionEdit,
} from "./version_edit.ts";

Deno.test("version edit: round trip and one-line description", () => {
  const meta = makeFileMeta({
    number: 12,
    sizeBytes: 4096,
    entryCount: 10,
    maxVersion: 99,
    smallest: encodeInternalKey(utf8("a"), 5),
    largest: encodeInternalKey(utf8("z"), 1),
  });
  const edit: VersionEdit = {
    logNumber: 3,
    nextFileNumber: 13,
    lastVersion: 99,
    compactedVersion: 4,
    appliedIndex: 0,
    deletedFiles: [{ level: 1, number: 7 }],
    newFiles: [{ level: 2, meta }],
    compactPointers: [{ level: 1, key: encodeInternalKey(utf8("m"), 2) }],
  };
  const back = decodeEdit(encodeEdit(edit), "MANIFEST", 0);
  assertEquals(back, edit);
  assertEquals(
    describeEdit(back),
    "log=3 next=13 last=99 compacted=4 applied=0 -L1:7 +L2:12[61..7a] ptr L1",
  );
});

Deno.test("version edit: an unknown tag is Corruption", () => {
  assertThrows(
    () => decodeEdit(new Uint8Array([99, 1]), "MANIFEST-000001", 8),
    CorruptionError,
    "tag 99",
  );
});
