/**
 * The RESP2 request parser without a socket: multibulk and inline commands,
 * pipelines split at every byte boundary, bounded sizes, and garbage that
 * must end in a protocol error rather than a crash or a hang.
 */
import { assertEquals, assertThrows, assertTrue } from "../../lib/common/test_helpers.ts";
import {
  maxRespBulkBytes,
  maxRespFrameBytes,
  maxRespInlineBytes,
} from "../../lib/common/limits.ts";
import { RespParser, RespProtocolError, splitInline } from "../../lib/resp/parser.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function multibulk(...args: string[]): string {
  return `*${args.length}\r\n` + args.map((a) => `$${enc.encode(a).length}\r\n${a}\r\n`).join("");
}

/** Feeds `chunks` and collects every complete command as strings. */
function parseAll(chunks: Uint8Array[]): string[][] {
  const p = new RespParser();
  const out: string[][] = [];
  for (const c of chunks) {
    p.feed(c);
    for (let args = p.next(); args !== undefined; args = p.next()) {
      out.push(args.map((a) => dec.decode(a)));
    }
  }
  return out;
}

const pipeline = multibulk("SET", "key", "va\r\nlue") + "PING\r\n" + multibulk("GET", "key") +
  'SET "a b" \'c\\\'d\' "\\x41\\n"\r\n' + "*0\r\n" + multibulk("ECHO", "");
const expected = [
  ["SET", "key", "va\r\nlue"],
  ["PING"],
  ["GET", "key"],
  ["SET", "a b", "c'd", "A\n"],
  [],
  ["ECHO", ""],
];

Deno.test("parser: a pipeline in one chunk gives every command in order", () => {
  assertEquals(parseAll([enc.encode(pipeline)]), expected);
});

Deno.test("parser: a pipeline split at every byte boundary gives the same commands", () => {
  const bytes = enc.encode(pipeline);
  for (let i = 0; i <= bytes.length; i++) {
    assertEquals(parseAll([bytes.subarray(0, i), bytes.subarray(i)]), expected, `split at ${i}`);
  }
});

Deno.test("parser: a pipeline fed one byte at a time gives the same commands", () => {
  const bytes = enc.encode(pipeline);
  assertEquals(parseAll([...bytes].map((b) => new Uint8Array([b]))), expected);
});

Deno.test("parser: a partial frame asks for more and keeps its bytes", () => {
  const p = new RespParser();
  p.feed(enc.encode("*2\r\n$3\r\nGET\r\n$3\r\nke"));
  assertEquals(p.next(), undefined);
  assertTrue(p.bufferedBytes > 0, "the partial bulk stays buffered");
  p.feed(enc.encode("y\r\n"));
  assertEquals(p.next()!.map((a) => dec.decode(a)), ["GET", "key"]);
  assertEquals(p.next(), undefined);
});

Deno.test("parser: 1,000 pipelined commands come out in order", () => {
  const text = Array.from({ length: 1000 }, (_, i) => multibulk("INCR", `k${i}`)).join("");
  const cmds = parseAll([enc.encode(text)]);
  assertEquals(cmds.length, 1000);
  assertEquals(cmds[999], ["INCR", "k999"]);
});

function protocolError(input: string | Uint8Array, message: RegExp): void {
  const p = new RespParser();
  p.feed(typeof input === "string" ? enc.encode(input) : input);
  const e = assertThrows(() => {
    while (p.next() !== undefined) { /* drain */ }
  }, RespProtocolError);
  assertTrue(message.test(e.message), `${JSON.stringify(e.message)} matches ${message}`);
}

Deno.test("parser: negative and oversized lengths are protocol errors", () => {
  protocolError("*1\r\n$-1\r\n", /invalid bulk length/);
  protocolError(`*1\r\n$${maxRespBulkBytes + 1}\r\n`, /invalid bulk length/);
  protocolError("*1\r\n$99999999999999999999\r\n", /invalid bulk length/);
  protocolError("*99999999\r\n", /invalid multibulk length/);
  protocolError("*abc\r\n", /invalid multibulk length/);
  protocolError("*1\r\n$x\r\n", /invalid bulk length/);
});

Deno.test("parser: a command's arguments together are bounded, before they are buffered", () => {
  // Each argument is within maxRespBulkBytes; together they are not within maxRespFrameBytes.
  const each = maxRespBulkBytes;
  const n = Math.floor(maxRespFrameBytes / each) + 1;
  const p = new RespParser();
  let head = `*${n + 1}\r\n$6\r\nEXISTS\r\n`;
  let error: Error | undefined;
  const arg = new Uint8Array(each + 2).fill(0x61);
  arg.set([13, 10], each);
  for (let i = 0; i < n && !error; i++) {
    p.feed(new TextEncoder().encode(`${head}$${each}\r\n`));
    head = "";
    try {
      p.next();
      p.feed(arg);
      p.next();
    } catch (e) {
      error = e as Error;
    }
  }
  assertTrue(error instanceof RespProtocolError, String(error));
  assertTrue(/maxRespFrameBytes/.test(error!.message), error!.message);
});

Deno.test("parser: a negative multibulk count is an empty command, like Redis", () => {
  assertEquals(parseAll([enc.encode("*-1\r\nPING\r\n")]), [[], ["PING"]]);
});

Deno.test("parser: garbage is a protocol error", () => {
  protocolError("*1\r\n+OK\r\n", /expected '\$', got '\+'/);
  protocolError("*1\r\n$3\r\nGETXX", /not terminated by CRLF/);
  protocolError("*1\n", /not terminated by CRLF/);
  protocolError('SET "unterminated\r\n', /unbalanced quotes/);
  protocolError('SET "a"b\r\n', /unbalanced quotes/);
});

Deno.test("parser: lines without a newline are bounded", () => {
  protocolError("A".repeat(maxRespInlineBytes + 1), /too big inline request/);
  protocolError("*" + "1".repeat(maxRespInlineBytes + 1), /too big mbulk count string/);
  protocolError("*1\r\n$" + "1".repeat(maxRespInlineBytes + 1), /too big bulk count string/);
  // Just under the bound: still waiting for more bytes.
  const p = new RespParser();
  p.feed(enc.encode("A".repeat(maxRespInlineBytes - 1)));
  assertEquals(p.next(), undefined);
});

Deno.test("parser: random garbage never throws anything but a protocol error", () => {
  let seed = 42;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const alphabet = enc.encode("*$\r\n-0123456789 \"'\\xabc");
  for (let round = 0; round < 2000; round++) {
    const bytes = new Uint8Array(1 + Math.floor(rand() * 40));
    for (let i = 0; i < bytes.length; i++) {
      bytes[i] = rand() < 0.9 ? alphabet[Math.floor(rand() * alphabet.length)] : rand() * 256;
    }
    const p = new RespParser();
    p.feed(bytes);
    try {
      for (let i = 0; i < 100 && p.next() !== undefined; i++) { /* drain */ }
    } catch (e) {
      assertTrue(e instanceof RespProtocolError, `round ${round}: ${e}`);
    }
  }
});

Deno.test("parser: inline splitting follows sdssplitargs", () => {
  const split = (s: string) => splitInline(enc.encode(s)).map((a) => dec.decode(a));
  assertEquals(split("  get   key  "), ["get", "key"]);
  assertEquals(split('set k "hello world"'), ["set", "k", "hello world"]);
  assertEquals(split("set k ''"), ["set", "k", ""]);
  assertEquals(split(""), []);
});
