import net from "node:net";
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { type Message, MessageType, newMessage } from "../raft/types.ts";
import { Logger } from "./logger.ts";
import { FrameQueue, PeerTransport, type TransportHost } from "./transport.ts";
import {
  encodeConnectionPreamble,
  encodeFrame,
  PeerFrameDecoder,
  PeerFrameKind,
} from "./peer_frame.ts";
import { encodeMessage } from "../raft/codec.ts";
import { concatBytes } from "../common/bytes.ts";

/** A transport host that records what it is told; peers are found through `addrs`. */
function recordingHost(selfId: string, quietMs: number, addrs: Map<string, string>) {
  const delivered: Message[] = [];
  const announced = new Map<string, number>();
  const host: TransportHost = {
    selfId,
    clusterId: () => "c1",
    voteQuietMs: () => quietMs,
    peerVoteQuiet: (id, ms) => announced.set(id, ms),
    addressOf: (id) => addrs.get(id),
    deliver: (messages) => delivered.push(...messages),
    unreachable: () => {},
    sendSnapshot: () => {},
    receiveSnapshot: () => Promise.resolve(),
  };
  return { host, delivered, announced };
}

Deno.test("peer transport: the receiver learns the sender's vote-quiet period from its Hello", async () => {
  const addrs = new Map<string, string>();
  const quiet = () => {};
  const a = recordingHost("n1", 126, addrs);
  const b = recordingHost("n2", 891, addrs);
  const ta = new PeerTransport(a.host, new Logger("n1", "error", quiet));
  const tb = new PeerTransport(b.host, new Logger("n2", "error", quiet));
  const server = net.createServer((socket) => {
    socket.once("data", (first: Uint8Array) => tb.acceptPeer(socket, first));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    addrs.set("n2", `127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    ta.send([
      newMessage({ type: MessageType.Heartbeat, from: "n1", to: "n2", groupId: 0, term: 3 }),
    ]);
    for (let i = 0; i < 200 && b.delivered.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assertEquals(b.delivered.map((m) => [m.type, m.from, m.term]), [[
      MessageType.Heartbeat,
      "n1",
      3,
    ]]);
    assertEquals([...b.announced], [["n1", 126]]);
    assertTrue(a.announced.size === 0, "nothing came the other way");
  } finally {
    ta.close();
    tb.close();
    await new Promise((r) => server.close(r));
  }
});

/** A listening server whose accepted sockets go to `accept`; closed with `close()`. */
async function listen(accept: (socket: net.Socket) => void) {
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    accept(socket);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    addr: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    sockets,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A raw client connection to `addr` that has sent `bytes`. */
async function rawPeer(addr: string, bytes: Uint8Array): Promise<net.Socket> {
  const [host, port] = addr.split(":");
  const socket = net.connect({ host, port: Number(port) });
  await new Promise<void>((r) => socket.once("connect", () => r()));
  socket.on("error", () => {});
  socket.write(bytes);
  return socket;
}

const quietLog = (id: string) => new Logger(id, "error", () => {});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("frame queue: pauses its producer at the high mark and resumes it at the low one", async () => {
  const events: string[] = [];
  const q = new FrameQueue({
    high: 3,
    low: 1,
    pause: () => events.push("pause"),
    resume: () => events.push("resume"),
  });
  const frame = { kind: PeerFrameKind.SnapshotEnd, totalRecords: 0 } as const;
  for (let i = 0; i < 4; i++) q.push(frame);
  assertEquals(events, ["pause"]);
  await q.next();
  await q.next();
  assertEquals(events, ["pause"]);
  await q.next(); // one left
  assertEquals(events, ["pause", "resume"]);
});

Deno.test("peer transport: a snapshot stream is not read further while its receiver falls behind", async () => {
  const addrs = new Map<string, string>();
  let consumerStarted = false;
  let release = () => {};
  const b = recordingHost("n2", 0, addrs);
  b.host.receiveSnapshot = async (_from, frames) => {
    await frames.next();
    consumerStarted = true;
    await new Promise<void>((r) => (release = r)); // a staging that does not catch up
  };
  const tb = new PeerTransport(b.host, quietLog("n2"));
  const server = await listen((socket) => {
    socket.once("data", (first: Uint8Array) => tb.acceptPeer(socket, first));
  });
  const chunk = new Uint8Array(256 * 1024);
  const frames = [
    encodeConnectionPreamble("c1", "n1"),
    encodeFrame({ kind: PeerFrameKind.SnapshotBegin, message: new Uint8Array(8), revision: 1 }),
    ...Array.from({ length: 60 }, (_, i) =>
      encodeFrame({
        kind: PeerFrameKind.SnapshotData,
        firstRecord: i,
        count: 1,
        crc32: 0,
        records: chunk,
      })),
  ];
  const sender = await rawPeer(server.addr, concatBytes(...frames));
  try {
    for (let i = 0; i < 100 && !consumerStarted; i++) await sleep(10);
    await sleep(500);
    const read = server.sockets[0].bytesRead;
    assertTrue(read < 8 * 1024 * 1024, `the receiver read ${read} bytes of a 15 MiB stream`);
  } finally {
    release();
    sender.destroy();
    tb.close();
    await server.close();
  }
});

Deno.test("peer transport: a first frame larger than a hello is refused before it is buffered", () => {
  const decoder = new PeerFrameDecoder(true);
  const preamble = encodeConnectionPreamble("c1", "n1").subarray(0, 5);
  const head = new Uint8Array([0x00, 0x80, 0x00, 0x00, PeerFrameKind.Hello]); // claims 8 MiB
  let error = "";
  try {
    decoder.push(concatBytes(preamble, head));
  } catch (e) {
    error = (e as Error).message;
  }
  assertTrue(error.includes("(the hello frame)"), error);
});

Deno.test("peer transport: messages whose sender differs from the connection's hello are refused", () => {
  const b = recordingHost("n2", 0, new Map());
  const tb = new PeerTransport(b.host, quietLog("n2"));
  const m = newMessage({ type: MessageType.Heartbeat, from: "n1", to: "n2", groupId: 0, term: 9 });
  const problem = tb.receiveBatch("c1", "n3", [encodeMessage(m)]);
  assertEquals(problem, "message from n1 on n3's connection");
  assertEquals(b.delivered, []);
  tb.close();
});

Deno.test("peer transport: a peer that accepts and refuses is redialled with growing backoff", async () => {
  const a = recordingHost("n1", 0, new Map());
  const ta = new PeerTransport(a.host, quietLog("n1"));
  const refusing = await listen((socket) => {
    socket.on("error", () => {});
    socket.end(encodeFrame({ kind: PeerFrameKind.Refuse, reason: "another cluster" }));
  });
  a.host.addressOf = () => refusing.addr;
  try {
    const until = Date.now() + 1_500;
    while (Date.now() < until) {
      ta.ping("n2");
      await sleep(10);
    }
    // 25, 50, 100, ... 1,000 ms apart: about 6 attempts in 1.5 s (it was one every 25-50 ms).
    assertTrue(refusing.sockets.length <= 8, `${refusing.sockets.length} connections`);
  } finally {
    ta.close();
    await refusing.close();
  }
});

Deno.test("peer transport: a peer that dials again while its old connection looks open gets a new connection from us too", async () => {
  const a = recordingHost("n1", 0, new Map());
  const addrs = new Map<string, string>();
  const b = recordingHost("n2", 0, addrs);
  const tb = new PeerTransport(b.host, quietLog("n2"));
  const toB = await listen((socket) => {
    socket.once("data", (first: Uint8Array) => tb.acceptPeer(socket, first));
  });
  const ta = new PeerTransport(a.host, quietLog("n1"));
  const toA = await listen((socket) => {
    socket.on("error", () => {});
    socket.once("data", (first: Uint8Array) => ta.acceptPeer(socket, first));
  });
  addrs.set("n1", toA.addr);
  const heartbeat = () =>
    tb.send([newMessage({ type: MessageType.Heartbeat, from: "n2", to: "n1", groupId: 0 })]);
  const hello = encodeConnectionPreamble("c1", "n1", 100);
  let first: net.Socket | undefined;
  let second: net.Socket | undefined;
  let third: net.Socket | undefined;
  try {
    heartbeat();
    for (let i = 0; i < 100 && a.delivered.length === 0; i++) await sleep(10);
    assertEquals(toA.sockets.length, 1);
    // n1's host crashed without a reset and came back: its old connection to n2 still looks
    // open there when the new one says hello.
    first = await rawPeer(toB.addr, hello);
    await sleep(1_100); // silent through four keep-alives: dead
    second = await rawPeer(toB.addr, hello);
    await sleep(100);
    heartbeat();
    for (let i = 0; i < 100 && toA.sockets.length < 2; i++) await sleep(10);
    assertEquals(toA.sockets.length, 2, "n2 dialled n1 again");
    assertTrue(first.destroyed || first.readyState !== "open", "the old connection was dropped");
    // An ordinary reconnect whose hello overtakes the close of a busy connection: no redial.
    third = await rawPeer(toB.addr, hello);
    await sleep(100);
    heartbeat();
    await sleep(200);
    assertEquals(toA.sockets.length, 2, "no redial for a connection that was just in use");
  } finally {
    first?.destroy();
    second?.destroy();
    third?.destroy();
    ta.close();
    tb.close();
    await toA.close();
    await toB.close();
  }
});
