import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import {
  clientPreface,
  encodeFrame,
  Flag,
  type Frame,
  FrameReader,
  FrameType,
  H2Error,
  headerFrames,
  Setting,
  settingsFrame,
  u32Frame,
} from "../server/h2/frames.ts";
import { encodeHeaders, HpackDecoder } from "../server/h2/hpack.ts";
import { ChannelStatus, H2Channel } from "./h2_channel.ts";

/** What a scripted server sees of one client connection. */
interface ServerSide {
  /** Every frame received so far, in order. */
  frames: Frame[];
  /** Request header fields by stream id. */
  headers: Map<number, Map<string, string>>;
  /** Request body bytes by stream id. */
  bodies: Map<number, number[]>;
  send(...frames: Uint8Array[]): Promise<void>;
}

/**
 * A scripted HTTP/2 server on 127.0.0.1 (port 0): it checks the preface,
 * collects frames, and calls `onFrame` for each so the test answers as it
 * wishes. Returns the address and a stop function that closes everything.
 */
function scriptedServer(
  onFrame: (f: Frame, side: ServerSide) => void | Promise<void>,
  initialSettings: [number, number][] = [],
) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const sides: ServerSide[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      const side: ServerSide = {
        frames: [],
        headers: new Map(),
        bodies: new Map(),
        send: async (...frames) => {
          for (const f of frames) {
            let off = 0;
            while (off < f.length) off += await conn.write(f.subarray(off));
          }
        },
      };
      sides.push(side);
      (async () => {
        const reader = new FrameReader(1 << 20);
        const decoder = new HpackDecoder();
        const buf = new Uint8Array(65_536);
        let preface = new Uint8Array(0);
        await side.send(settingsFrame(initialSettings));
        try {
          for (;;) {
            const n = await conn.read(buf);
            if (n === null) return;
            let chunk = buf.slice(0, n);
            if (preface.length < clientPreface.length) {
              const need = clientPreface.length - preface.length;
              preface = new Uint8Array([...preface, ...chunk.subarray(0, need)]);
              chunk = chunk.subarray(need);
              if (preface.length === clientPreface.length) {
                assertEquals(preface, clientPreface, "the client preface");
              }
            }
            for (const f of reader.feed(chunk)) {
              const copy = { ...f, payload: f.payload.slice() };
              side.frames.push(copy);
              if (f.type === FrameType.Headers) {
                side.headers.set(f.streamId, new Map(decoder.decode(copy.payload)));
              } else if (f.type === FrameType.Data) {
                const body = side.bodies.get(f.streamId) ?? [];
                body.push(...copy.payload);
                side.bodies.set(f.streamId, body);
              }
              await onFrame(copy, side);
            }
          }
        } catch {
          // the client went away
        }
      })();
    }
  })().catch(() => {});
  const addr = listener.addr as Deno.NetAddr;
  return {
    endpoint: `127.0.0.1:${addr.port}`,
    sides,
    async stop() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await serving;
    },
  };
}

/** A gRPC message frame body: u8 0 · u32 length · bytes. */
function grpcMessage(bytes: number[]): Uint8Array {
  const out = new Uint8Array(5 + bytes.length);
  new DataView(out.buffer).setUint32(1, bytes.length);
  out.set(bytes, 5);
  return out;
}

/** Answers a stream with `message` split over two DATA frames, then OK trailers. */
function answer(side: ServerSide, streamId: number, message: number[]): Promise<void> {
  const body = grpcMessage(message);
  const half = body.length >> 1;
  return side.send(
    ...headerFrames(
      streamId,
      encodeHeaders([[":status", "200"], ["content-type", "application/grpc"]]),
      false,
      16_384,
    ),
    encodeFrame(FrameType.Data, 0, streamId, body.subarray(0, half)),
    encodeFrame(FrameType.Data, 0, streamId, body.subarray(half)),
    ...headerFrames(streamId, encodeHeaders([["grpc-status", "0"]]), true, 16_384),
  );
}

Deno.test("h2 channel: a unary call sends a gRPC request and reads a message split over frames", async () => {
  const server = scriptedServer(async (f, side) => {
    if (f.type === FrameType.Data && (f.flags & Flag.EndStream)) {
      await answer(side, f.streamId, [...side.bodies.get(f.streamId)!.slice(5)].reverse());
    }
  });
  const channel = new H2Channel(server.endpoint);
  try {
    const results = await Promise.all(
      [[1, 2, 3], [4, 5], [6]].map((m) =>
        channel.unary("/pkg.Svc/Method", Uint8Array.from(m), Date.now() + 5_000)
      ),
    );
    assertEquals(results.map((r) => r.code), [0, 0, 0]);
    assertEquals(results.map((r) => [...r.response!]), [[3, 2, 1], [5, 4], [6]]);
    const side = server.sides[0];
    assertEquals(server.sides.length, 1, "one connection for all calls");
    const h = side.headers.get(1)!;
    assertEquals(h.get(":path"), "/pkg.Svc/Method");
    assertEquals(h.get(":method"), "POST");
    assertEquals(h.get("content-type"), "application/grpc");
    assertEquals(h.get("te"), "trailers");
    assertTrue(/^\d+m$/.test(h.get("grpc-timeout")!), `grpc-timeout ${h.get("grpc-timeout")}`);
    assertEquals([...side.headers.keys()], [1, 3, 5], "odd, increasing stream ids");
  } finally {
    channel.close();
    await server.stop();
  }
});

Deno.test("h2 channel: status, percent-encoded message and metadata of a failed call", async () => {
  const server = scriptedServer(async (f, side) => {
    if (f.type === FrameType.Data && (f.flags & Flag.EndStream)) {
      await side.send(...headerFrames(
        f.streamId,
        encodeHeaders([
          [":status", "200"],
          ["content-type", "application/grpc"],
          ["grpc-status", "9"],
          ["grpc-message", "not the leader: ask n2 %28127.0.0.1%29"],
          ["x-error-code", "NotLeader"],
        ]),
        true,
        16_384,
      ));
    }
  });
  const channel = new H2Channel(server.endpoint);
  try {
    const r = await channel.unary("/pkg.Svc/M", new Uint8Array([1]), Date.now() + 5_000);
    assertEquals(r.code, 9);
    assertEquals(r.details, "not the leader: ask n2 (127.0.0.1)");
    assertEquals(r.metadata.get("x-error-code"), "NotLeader");
    assertEquals(r.response, undefined);
  } finally {
    channel.close();
    await server.stop();
  }
});

Deno.test("h2 channel: a server that never answers: DEADLINE_EXCEEDED at the deadline, stream reset", async () => {
  const server = scriptedServer(() => {});
  const channel = new H2Channel(server.endpoint);
  try {
    const started = Date.now();
    const r = await channel.unary("/pkg.Svc/Slow", new Uint8Array([1]), started + 200);
    const took = Date.now() - started;
    assertEquals(r.code, ChannelStatus.DeadlineExceeded);
    assertTrue(took >= 190 && took < 2_000, `took ${took} ms for a 200 ms deadline`);
    // The reset reaches the server shortly after.
    const deadline = Date.now() + 2_000;
    const reset = () =>
      server.sides[0].frames.find((f) => f.type === FrameType.RstStream && f.streamId === 1);
    while (!reset() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const f = reset();
    assertTrue(f !== undefined, "RST_STREAM sent");
    assertEquals(new DataView(f!.payload.buffer).getUint32(0), H2Error.Cancel);
  } finally {
    channel.close();
    await server.stop();
  }
});

Deno.test("h2 channel: GOAWAY fails untaken calls as unavailable; the next call reconnects", async () => {
  let goneAway = false;
  const server = scriptedServer(async (f, side) => {
    if (f.type !== FrameType.Data || !(f.flags & Flag.EndStream)) return;
    if (!goneAway) {
      goneAway = true;
      const payload = new Uint8Array(8); // last stream id 0, NO_ERROR
      await side.send(encodeFrame(FrameType.GoAway, 0, 0, payload));
      return;
    }
    await answer(side, f.streamId, [42]);
  });
  const channel = new H2Channel(server.endpoint);
  try {
    const first = await channel.unary("/pkg.Svc/M", new Uint8Array([1]), Date.now() + 5_000);
    assertEquals(first.code, ChannelStatus.Unavailable);
    assertTrue(first.details.includes("not processed"), first.details);
    const second = await channel.unary("/pkg.Svc/M", new Uint8Array([1]), Date.now() + 5_000);
    assertEquals(second.code, 0);
    assertEquals([...second.response!], [42]);
    assertEquals(server.sides.length, 2, "a new connection after GOAWAY");
  } finally {
    channel.close();
    await server.stop();
  }
});

Deno.test("h2 channel: a request larger than the peer's windows waits for WINDOW_UPDATE", async () => {
  const requestBytes = 100_000;
  const server = scriptedServer(async (f, side) => {
    if (f.type === FrameType.Data && (f.flags & Flag.EndStream)) {
      const got = side.bodies.get(f.streamId)!.length;
      await answer(side, f.streamId, [got & 0xff, (got >> 8) & 0xff, got >> 16]);
    }
  }, [[Setting.InitialWindowSize, 1_000]]);
  const channel = new H2Channel(server.endpoint);
  try {
    // A first call settles the SETTINGS exchange: new streams start with a 1,000-byte window.
    assertEquals(
      (await channel.unary("/pkg.Svc/M", new Uint8Array(1), Date.now() + 5_000)).code,
      0,
    );
    const side = server.sides[0];
    const big = channel.unary(
      "/pkg.Svc/Big",
      new Uint8Array(requestBytes).fill(7),
      Date.now() + 10_000,
    );
    const sent = () => side.bodies.get(3)?.length ?? 0;
    /** Waits (bounded) until `bytes` arrived, then a little longer: no more may follow. */
    const settlesAt = async (bytes: number, what: string) => {
      const deadline = Date.now() + 5_000;
      while (sent() < bytes && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 100));
      assertEquals(sent(), bytes, what);
    };
    await settlesAt(1_000, "the stream window, and not a byte more");
    await side.send(u32Frame(FrameType.WindowUpdate, 3, 1 << 20));
    await settlesAt(65_535 - 6, "then the connection window (the first call used 6 bytes)");
    await side.send(u32Frame(FrameType.WindowUpdate, 0, 1 << 20));
    const r = await big;
    assertEquals(r.code, 0, r.details);
    const total = 5 + requestBytes;
    assertEquals([...r.response!], [total & 0xff, (total >> 8) & 0xff, total >> 16]);
  } finally {
    channel.close();
    await server.stop();
  }
});

Deno.test("h2 channel: refused connection is UNAVAILABLE at once; an aborted call is CANCELLED", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close(); // nothing listens there now
  const dead = new H2Channel(`127.0.0.1:${port}`);
  const started = Date.now();
  const r = await dead.unary("/pkg.Svc/M", new Uint8Array([1]), Date.now() + 5_000);
  assertEquals(r.code, ChannelStatus.Unavailable);
  assertTrue(Date.now() - started < 2_000, "without waiting for the deadline");
  dead.close();

  const server = scriptedServer(() => {});
  const channel = new H2Channel(server.endpoint);
  try {
    const abort = new AbortController();
    const pending = channel.unary(
      "/pkg.Svc/M",
      new Uint8Array([1]),
      Date.now() + 5_000,
      abort.signal,
    );
    setTimeout(() => abort.abort(), 50);
    assertEquals((await pending).code, ChannelStatus.Cancelled);
  } finally {
    channel.close();
    await server.stop();
  }
});

Deno.test("h2 channel: a call waiting for a free stream ends at its own deadline", async () => {
  // One stream at a time, and the first call is never answered.
  const server = scriptedServer(() => {}, [[Setting.MaxConcurrentStreams, 1]]);
  const channel = new H2Channel(server.endpoint);
  try {
    const first = channel.unary("/pkg.Svc/Slow", new Uint8Array([1]), Date.now() + 10_000);
    await new Promise((r) => setTimeout(r, 100)); // the server's SETTINGS arrive
    const started = Date.now();
    const second = await channel.unary("/pkg.Svc/Slow", new Uint8Array([2]), started + 200);
    const took = Date.now() - started;
    assertEquals(second.code, ChannelStatus.DeadlineExceeded);
    assertTrue(took >= 190 && took < 1_500, `took ${took} ms for a 200 ms deadline`);
    channel.close();
    assertEquals((await first).code, ChannelStatus.Cancelled);
  } finally {
    channel.close();
    await server.stop();
  }
});
