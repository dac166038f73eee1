import { EventEmitter } from "node:events";
import { setImmediate } from "node:timers";
import type net from "node:net";
import { concatBytes } from "../../common/bytes.ts";
import { assertEquals, assertTrue } from "../../common/test_helpers.ts";
import { H2ServerConnection } from "./connection.ts";
import {
  clientPreface,
  encodeFrame,
  Flag,
  type Frame,
  FrameReader,
  FrameType,
  H2Error,
  Setting,
  settingsFrame,
  u32Frame,
} from "./frames.ts";
import { encodeHeaders, type HeaderField, HpackDecoder } from "./hpack.ts";
import { encodeGrpcMessage, type GrpcCall, GrpcRouter, parseGrpcTimeout } from "./grpc.ts";

/** The parts of a net.Socket the connection uses, recording what it writes. */
class FakeSocket extends EventEmitter {
  written: Uint8Array[] = [];
  ended = false;
  destroyed = false;
  writableLength = 0;
  paused = false;
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  write(bytes: Uint8Array): boolean {
    this.written.push(bytes.slice());
    return true;
  }
  end(): void {
    this.ended = true;
  }
  destroy(): void {
    this.destroyed = true;
  }
}

/** A test client speaking raw HTTP/2 frames to one server connection. */
class RawClient {
  readonly socket = new FakeSocket();
  readonly #reader = new FrameReader(1 << 24);
  readonly #decoder = new HpackDecoder();
  #read = 0;

  constructor(router: GrpcRouter, settings: [number, number][] = []) {
    new H2ServerConnection(
      this.socket as unknown as net.Socket,
      (stream) => router.serve(stream),
      clientPreface,
    );
    this.send(settingsFrame(settings));
  }

  send(bytes: Uint8Array): void {
    this.socket.emit("data", bytes);
  }

  /** Opens stream `id` with gRPC request headers. */
  headers(id: number, path: string, extra: HeaderField[] = [], endStream = false): void {
    const block = encodeHeaders([
      [":method", "POST"],
      [":scheme", "http"],
      [":path", path],
      [":authority", "localhost"],
      ["content-type", "application/grpc"],
      ...extra,
    ]);
    const flags = Flag.EndHeaders | (endStream ? Flag.EndStream : 0);
    this.send(encodeFrame(FrameType.Headers, flags, id, block));
  }

  /** Sends one length-prefixed gRPC message on `id`, ending the request. */
  message(id: number, body: Uint8Array, endStream = true): void {
    const framed = new Uint8Array(5 + body.length);
    new DataView(framed.buffer).setUint32(1, body.length);
    framed.set(body, 5);
    this.send(encodeFrame(FrameType.Data, endStream ? Flag.EndStream : 0, id, framed));
  }

  /**
   * Frames the server wrote since the last call, after its writes were
   * flushed; with `endOf`, waits (up to 2 s) until that stream has ended,
   * since a handler under load may answer later than one short wait.
   */
  async frames(endOf?: number): Promise<(Frame & { fields?: HeaderField[] })[]> {
    const out: (Frame & { fields?: HeaderField[] })[] = [];
    const deadline = Date.now() + 2000;
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      // The connection flushes its writes with setImmediate: an expired timer can run before a
      // flush scheduled earlier (a busy machine), an immediate queued now runs after it.
      await new Promise((resolve) => setImmediate(resolve));
      for (const chunk of this.socket.written.slice(this.#read)) {
        for (const f of this.#reader.feed(chunk)) {
          const copy = { ...f, payload: f.payload.slice() };
          out.push(
            f.type === FrameType.Headers
              ? { ...copy, fields: this.#decoder.decode(copy.payload) }
              : copy,
          );
        }
      }
      this.#read = this.socket.written.length;
      const ended = endOf === undefined ||
        out.some((f) => f.streamId === endOf && (f.flags & Flag.EndStream) !== 0);
      if (ended) return out;
      if (Date.now() > deadline) throw new Error(`stream ${endOf} did not end within 2 s`);
    }
  }
}

const json = {
  encode: (m: unknown) => new TextEncoder().encode(JSON.stringify(m)),
  decode: (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b)),
};

function testRouter(maxMessageBytes = 1024): { router: GrpcRouter; cancelled: string[] } {
  const cancelled: string[] = [];
  const router = new GrpcRouter(maxMessageBytes, (e) => ({
    code: 3,
    details: (e as Error).message,
    metadata: { "rustkvd-error": "InvalidArgument" },
  }));
  router.add("/t.S/Echo", json, {
    kind: "unary",
    handle: (req) => Promise.resolve({ echo: req.text }),
  });
  router.add("/t.S/Fail", json, {
    kind: "unary",
    handle: () => Promise.reject(new Error(" bad key ")),
  });
  router.add("/t.S/Big", json, {
    kind: "unary",
    handle: (req) => Promise.resolve({ blob: "x".repeat(req.size) }),
  });
  router.add("/t.S/Hang", json, {
    kind: "unary",
    handle: (_req, call: GrpcCall) =>
      new Promise(() => call.onCancel(() => cancelled.push("Hang"))),
  });
  return { router, cancelled };
}

function field(fields: HeaderField[] | undefined, name: string): string | undefined {
  return fields?.find(([n]) => n === name)?.[1];
}

function body(frames: Frame[], id: number): unknown {
  const data = frames.filter((f) => f.type === FrameType.Data && f.streamId === id);
  const bytes = new Uint8Array(data.reduce((n, f) => n + f.payload.length, 0));
  let at = 0;
  for (const f of data) {
    bytes.set(f.payload, at);
    at += f.payload.length;
  }
  return json.decode(bytes.subarray(5));
}

Deno.test("h2: a unary call gets headers, one message and OK trailers on its stream", async () => {
  const client = new RawClient(testRouter().router);
  client.headers(1, "/t.S/Echo");
  client.message(1, json.encode({ text: "hi" }));
  const frames = await client.frames();
  assertTrue(frames.some((f) => f.type === FrameType.Settings && f.flags === 0));
  const headers = frames.filter((f) => f.type === FrameType.Headers && f.streamId === 1);
  assertEquals(headers.length, 2);
  assertEquals(field(headers[0].fields, ":status"), "200");
  assertEquals(body(frames, 1), { echo: "hi" });
  assertEquals(field(headers[1].fields, "grpc-status"), "0");
  assertTrue((headers[1].flags & Flag.EndStream) !== 0, "trailers end the stream");
});

Deno.test("h2: a request message split over DATA frames anywhere, also inside its prefix", async () => {
  // A ~60 KB message, cut inside the 5-byte prefix, right after it, mid-body and in 40 pieces;
  // the handler answers with a digest of what it received.
  const router = new GrpcRouter(64 * 1024, () => ({ code: 13, details: "unexpected" }));
  router.add("/t.S/Digest", json, {
    kind: "unary",
    handle: (req) => {
      let sum = 0;
      for (let i = 0; i < req.text.length; i++) sum = (sum * 31 + req.text.charCodeAt(i)) >>> 0;
      return Promise.resolve({ length: req.text.length, sum });
    },
  });
  const text = Array.from({ length: 60_000 }, (_, i) => String.fromCharCode(97 + (i * 7) % 26))
    .join("");
  let want = 0;
  for (let i = 0; i < text.length; i++) want = (want * 31 + text.charCodeAt(i)) >>> 0;
  const encoded = json.encode({ text });
  const framed = new Uint8Array(5 + encoded.length);
  new DataView(framed.buffer).setUint32(1, encoded.length);
  framed.set(encoded, 5);
  const cuts = [
    [1],
    [4],
    [5],
    [6],
    [3, 7, 30_000],
    Array.from({ length: 40 }, (_, i) => 1 + i * 1500),
  ];
  const client = new RawClient(router);
  let id = 1;
  for (const cut of cuts) {
    client.headers(id, "/t.S/Digest");
    const points = [0, ...cut, framed.length];
    for (let k = 0; k + 1 < points.length; k++) {
      const last = k + 2 === points.length;
      const piece = framed.slice(points[k], points[k + 1]);
      client.send(encodeFrame(FrameType.Data, last ? Flag.EndStream : 0, id, piece));
      piece.fill(0); // the connection may not keep the frame's bytes
    }
    const frames = await client.frames(id);
    assertEquals(body(frames, id), { length: text.length, sum: want }, `cuts ${cut}`);
    id += 2;
  }
});

Deno.test("h2: a client stream gets its messages in order, several to a frame or one per frame", async () => {
  const router = new GrpcRouter(1024, () => ({ code: 13, details: "unexpected" }));
  router.add("/t.S/Collect", json, {
    kind: "clientStream",
    handle: async (requests) => {
      const got: number[] = [];
      for await (const m of requests) got.push(m.n);
      return { got };
    },
  });
  router.add("/t.S/Echo", json, { kind: "unary", handle: (req) => Promise.resolve(req) });
  const client = new RawClient(router);
  const framed = (n: number) => {
    const encoded = json.encode({ n });
    const out = new Uint8Array(5 + encoded.length);
    new DataView(out.buffer).setUint32(1, encoded.length);
    out.set(encoded, 5);
    return out;
  };
  client.headers(1, "/t.S/Collect");
  client.send(encodeFrame(FrameType.Data, 0, 1, framed(1)));
  const three = [framed(2), framed(3), framed(4)];
  const joined = new Uint8Array(three.reduce((n, b) => n + b.length, 0));
  three.reduce((at, b) => (joined.set(b, at), at + b.length), 0);
  client.send(encodeFrame(FrameType.Data, 0, 1, joined));
  client.send(encodeFrame(FrameType.Data, Flag.EndStream, 1, framed(5)));
  // A unary call that sends two messages is refused, not answered with the first.
  client.headers(3, "/t.S/Echo");
  client.send(encodeFrame(FrameType.Data, 0, 3, framed(6)));
  client.send(encodeFrame(FrameType.Data, Flag.EndStream, 3, framed(7)));
  const frames = await client.frames(1);
  assertEquals(body(frames, 1), { got: [1, 2, 3, 4, 5] });
  const ended3 = frames.some((f) => f.streamId === 3 && (f.flags & Flag.EndStream) !== 0);
  const more = ended3 ? frames : frames.concat(await client.frames(3));
  const trailers = more.filter((f) => f.type === FrameType.Headers && f.streamId === 3).at(-1);
  assertEquals(field(trailers?.fields, "grpc-status"), "12");
  assertEquals(field(trailers?.fields, "grpc-message"), "expected one request message, got 2");
});

Deno.test("h2: interleaved streams each get their own answer", async () => {
  const client = new RawClient(testRouter().router);
  client.headers(1, "/t.S/Echo");
  client.headers(3, "/t.S/Echo");
  client.message(3, json.encode({ text: "three" }));
  client.message(1, json.encode({ text: "one" }));
  const frames = await client.frames();
  assertEquals(body(frames, 1), { echo: "one" });
  assertEquals(body(frames, 3), { echo: "three" });
});

Deno.test("h2: a failing handler ends with its status, message (edge spaces encoded) and metadata", async () => {
  const client = new RawClient(testRouter().router);
  client.headers(1, "/t.S/Fail");
  client.message(1, json.encode({}));
  const [trailers] = (await client.frames()).filter((f) => f.type === FrameType.Headers);
  assertEquals(field(trailers.fields, "grpc-status"), "3");
  assertEquals(field(trailers.fields, "grpc-message"), "%20bad key%20");
  assertEquals(field(trailers.fields, "rustkvd-error"), "InvalidArgument");
});

Deno.test("h2: unknown methods, oversized and compressed messages get gRPC statuses", async () => {
  const client = new RawClient(testRouter(64).router);
  client.headers(1, "/t.S/Nope");
  client.message(1, json.encode({}));
  client.headers(3, "/t.S/Echo");
  client.message(3, json.encode({ text: "y".repeat(100) }));
  client.headers(5, "/t.S/Echo");
  const compressed = json.encode({ text: "z" });
  const framed = new Uint8Array(5 + compressed.length);
  framed[0] = 1;
  new DataView(framed.buffer).setUint32(1, compressed.length);
  framed.set(compressed, 5);
  client.send(encodeFrame(FrameType.Data, Flag.EndStream, 5, framed));
  const byStream = new Map<number, HeaderField[] | undefined>();
  for (const f of await client.frames()) {
    if (f.type === FrameType.Headers) byStream.set(f.streamId, f.fields);
  }
  assertEquals(field(byStream.get(1), "grpc-status"), "12");
  assertEquals(field(byStream.get(3), "grpc-status"), "8");
  assertTrue(field(byStream.get(3), "grpc-message")!.includes("64"), "names the limit");
  assertEquals(field(byStream.get(5), "grpc-status"), "12");
});

Deno.test("h2: a deadline ends a hanging call with DEADLINE_EXCEEDED and cancels it", async () => {
  const { router, cancelled } = testRouter();
  const client = new RawClient(router);
  client.headers(1, "/t.S/Hang", [["grpc-timeout", "20m"]]);
  client.message(1, json.encode({}));
  await new Promise((resolve) => setTimeout(resolve, 60));
  const [trailers] = (await client.frames()).filter((f) => f.type === FrameType.Headers);
  assertEquals(field(trailers.fields, "grpc-status"), "4");
  assertEquals(cancelled, ["Hang"]);
});

Deno.test("h2: a client RST_STREAM cancels the call; the connection serves on", async () => {
  const { router, cancelled } = testRouter();
  const client = new RawClient(router);
  client.headers(1, "/t.S/Hang");
  client.message(1, json.encode({}));
  await client.frames(); // the handler is running
  client.send(u32Frame(FrameType.RstStream, 1, H2Error.Cancel));
  client.headers(3, "/t.S/Echo");
  client.message(3, json.encode({ text: "after" }));
  const frames = await client.frames();
  assertEquals(cancelled, ["Hang"]);
  assertEquals(body(frames, 3), { echo: "after" });
});

Deno.test("h2: a response larger than the client's window waits for WINDOW_UPDATE", async () => {
  const client = new RawClient(testRouter().router, [[Setting.InitialWindowSize, 100]]);
  client.headers(1, "/t.S/Big");
  client.message(1, json.encode({ size: 500 }));
  let frames = await client.frames();
  const sent = (fs: Frame[]) =>
    fs.filter((f) => f.type === FrameType.Data).reduce((n, f) => n + f.payload.length, 0);
  assertEquals(sent(frames), 100, "only the window's worth is sent");
  assertTrue(!frames.some((f) => f.type === FrameType.Headers && f.flags & Flag.EndStream));
  client.send(u32Frame(FrameType.WindowUpdate, 1, 10_000));
  frames = await client.frames();
  assertEquals(sent(frames), 5 + JSON.stringify({ blob: "x".repeat(500) }).length - 100);
  const trailers = frames.find((f) => f.type === FrameType.Headers);
  assertEquals(field(trailers?.fields, "grpc-status"), "0");
});

Deno.test("h2: protocol violations end the connection with GOAWAY and its code, no throw", async () => {
  const cases: [string, (c: RawClient) => void, number][] = [
    [
      "a frame above the size limit",
      (c) => c.send(Uint8Array.of(0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1)),
      H2Error.FrameSizeError,
    ],
    [
      "DATA on stream 0",
      (c) => c.send(encodeFrame(FrameType.Data, 0, 0, Uint8Array.of(1))),
      H2Error.ProtocolError,
    ],
    ["an even stream id", (c) => c.headers(2, "/t.S/Echo"), H2Error.ProtocolError],
    [
      "a corrupt header block",
      (c) => c.send(encodeFrame(FrameType.Headers, Flag.EndHeaders, 1, Uint8Array.of(0x80))),
      H2Error.CompressionError,
    ],
    [
      "SETTINGS of a bad length",
      (c) => c.send(encodeFrame(FrameType.Settings, 0, 0, Uint8Array.of(1, 2, 3))),
      H2Error.FrameSizeError,
    ],
    [
      "a zero connection WINDOW_UPDATE",
      (c) => c.send(u32Frame(FrameType.WindowUpdate, 0, 0)),
      H2Error.ProtocolError,
    ],
    [
      // An HPACK bomb: a 4,000-byte table entry, then 40,000 one-byte references to it.
      "a small header block that decodes to megabytes",
      (c) => {
        const name = new TextEncoder().encode("x-big");
        const value = new Uint8Array(4_000).fill(0x61);
        // Literal with incremental indexing, new name: 0x40, name (len 5), value (len 4000).
        const literal = [0x40, name.length, ...name, 0x7f, ...hpackInt(4_000 - 127), ...value];
        const refs = new Uint8Array(40_000).fill(0x80 | 62); // index 62: the entry just added
        c.send(
          encodeFrame(
            FrameType.Headers,
            Flag.EndHeaders,
            1,
            Uint8Array.from([...literal, ...refs]),
          ),
        );
      },
      H2Error.CompressionError,
    ],
    [
      "a header block in a flood of empty CONTINUATION frames",
      (c) => {
        const frames = [encodeFrame(FrameType.Headers, 0, 1, new Uint8Array(0))];
        for (let i = 0; i < 1_000; i++) {
          frames.push(encodeFrame(FrameType.Continuation, 0, 1, new Uint8Array(0)));
        }
        c.send(concatBytes(...frames));
      },
      H2Error.EnhanceYourCalm,
    ],
  ];
  for (const [what, act, code] of cases) {
    const client = new RawClient(testRouter().router);
    act(client);
    const goAway = (await client.frames()).find((f) => f.type === FrameType.GoAway);
    assertTrue(goAway !== undefined, `${what}: GOAWAY`);
    assertEquals(new DataView(goAway.payload.buffer).getUint32(4), code, what);
    assertTrue(client.socket.ended, `${what}: socket closed`);
  }
});

Deno.test("h2: bytes that are not the HTTP/2 preface close the connection", async () => {
  const socket = new FakeSocket();
  new H2ServerConnection(socket as unknown as net.Socket, () => {
    throw new Error("no stream expected");
  }, new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  await new Promise((resolve) => setTimeout(resolve, 5));
  assertTrue(socket.ended);
});

Deno.test("grpc-timeout parsing and grpc-message encoding follow the gRPC spec", () => {
  assertEquals(parseGrpcTimeout("100m"), 100);
  assertEquals(parseGrpcTimeout("5S"), 5000);
  assertEquals(parseGrpcTimeout("2M"), 120_000);
  assertEquals(parseGrpcTimeout("123456789m"), undefined);
  assertEquals(parseGrpcTimeout("1x"), undefined);
  assertEquals(encodeGrpcMessage("50% of é"), "50%25 of %C3%A9");
});

/** An HPACK integer's continuation bytes for `rest` (the part past the prefix). */
function hpackInt(rest: number): number[] {
  const out: number[] = [];
  while (rest >= 0x80) {
    out.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
  return out;
}

Deno.test("h2: a client that does not read gets no new streams, and is not read, until it drains", async () => {
  const client = new RawClient(testRouter().router);
  await client.frames();
  client.socket.writableLength = 64 << 20; // our answers pile up unread
  client.headers(1, "/t.S/Echo");
  const refused = (await client.frames()).find((f) => f.type === FrameType.RstStream);
  assertTrue(refused !== undefined, "RST_STREAM");
  assertEquals(refused!.streamId, 1);
  assertEquals(new DataView(refused!.payload.buffer).getUint32(0), H2Error.RefusedStream);
  assertTrue(client.socket.paused, "reading stopped");
  client.socket.writableLength = 0;
  client.socket.emit("drain");
  assertTrue(!client.socket.paused, "reading resumed");
});

Deno.test("h2 frames: a reader fed in pieces of any size yields the same frames", () => {
  const frames = [
    encodeFrame(FrameType.Data, 0, 1, new Uint8Array(70_000).map((_, i) => i & 0xff)),
    encodeFrame(FrameType.Ping, 0, 0, new Uint8Array(8).fill(7)),
    encodeFrame(FrameType.Data, Flag.EndStream, 3, new Uint8Array(5).fill(9)),
  ];
  const wire = concatBytes(...frames);
  for (const piece of [1, 7, 64, 1_000, 65_536, wire.length]) {
    const reader = new FrameReader(1 << 20);
    const got: string[] = [];
    for (let at = 0; at < wire.length; at += piece) {
      for (const f of reader.feed(wire.subarray(at, at + piece))) {
        got.push(
          `${f.type}/${f.streamId}/${f.payload.length}/${f.payload.reduce((a, b) => a + b, 0)}`,
        );
      }
    }
    const sum = (n: number, f: (i: number) => number) =>
      Array.from({ length: n }, (_, i) => f(i)).reduce((a, b) => a + b, 0);
    assertEquals(got, [
      `${FrameType.Data}/1/70000/${sum(70_000, (i) => i & 0xff)}`,
      `${FrameType.Ping}/0/8/56`,
      `${FrameType.Data}/3/5/45`,
    ], `pieces of ${piece}`);
  }
});
