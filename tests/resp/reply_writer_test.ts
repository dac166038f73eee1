/** The RESP2 reply encoder, byte for byte. */
import { assertEquals } from "../../lib/common/test_helpers.ts";
import { ReplyWriter } from "../../lib/resp/reply_writer.ts";

const dec = new TextDecoder();

Deno.test("reply writer: every reply type in one buffer", () => {
  const w = new ReplyWriter();
  w.simple("OK").error("ERR bad\r\nthing").integer(-5).integer(2n ** 63n - 1n).bulk("héllo")
    .bulk(new Uint8Array([0, 13, 10])).nil().nilArray().bulkArray(["a", undefined]).arrayHeader(0);
  assertEquals(
    dec.decode(w.take()),
    "+OK\r\n-ERR bad  thing\r\n:-5\r\n:9223372036854775807\r\n$6\r\nhéllo\r\n$3\r\n\0\r\n\r\n" +
      "$-1\r\n*-1\r\n*2\r\n$1\r\na\r\n$-1\r\n*0\r\n",
  );
  assertEquals(w.length, 0);
});

Deno.test("reply writer: grows past its initial buffer", () => {
  const w = new ReplyWriter();
  const big = "x".repeat(100_000);
  w.bulk(big).simple("OK");
  const out = dec.decode(w.take());
  assertEquals(out, `$100000\r\n${big}\r\n+OK\r\n`);
});
