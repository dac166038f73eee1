/** SCAN/KEYS glob matching and SCAN cursors. */
import { assertEquals, assertThrows } from "../../lib/common/test_helpers.ts";
import { globMatch, literalPrefix } from "../../lib/resp/glob.ts";
import { decodeCursor, encodeCursor } from "../../lib/resp/scan_cursor.ts";
import { ReplyError } from "../../lib/resp/command_table.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const m = (p: string, k: string) => globMatch(enc.encode(p), enc.encode(k));

Deno.test("glob: wildcards, classes and escapes", () => {
  assertEquals(m("*", ""), true);
  assertEquals(m("user:*", "user:1"), true);
  assertEquals(m("user:*", "users"), false);
  assertEquals(m("h?llo", "hello"), true);
  assertEquals(m("h[ae]llo", "hallo"), true);
  assertEquals(m("h[^e]llo", "hello"), false);
  assertEquals(m("h[a-c]llo", "hbllo"), true);
  assertEquals(m("a\\*b", "a*b"), true);
  assertEquals(m("a\\*b", "axb"), false);
  assertEquals(m("*:1*", "user:12"), true);
  assertEquals(dec.decode(literalPrefix(enc.encode("us\\*er:*x"))), "us*er:");
});

Deno.test("scan cursor: round-trips keys, including leading zero bytes", () => {
  for (const key of [new Uint8Array([0, 0, 1]), enc.encode("user:1"), new Uint8Array([255])]) {
    const c = encodeCursor(key);
    assertEquals(/^[1-9]\d*$/.test(c), true);
    assertEquals(decodeCursor(c), key);
  }
  assertEquals(decodeCursor("0"), undefined);
  assertThrows(() => decodeCursor("abc"), ReplyError);
  assertThrows(() => decodeCursor("2"), ReplyError);
});
