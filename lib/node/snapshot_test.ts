import net from "node:net";
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { type Message, MessageType, newMessage } from "../raft/types.ts";
import { encodeMessage } from "../raft/codec.ts";
import { Engine } from "../storage/engine.ts";
import { MemFileSystem } from "../storage/mem_fs.ts";
import { Logger } from "./logger.ts";
import { type PeerFrame, PeerFrameKind } from "./peer_frame.ts";
import { SnapshotReceiver, SnapshotSender } from "./snapshot.ts";
import { FrameQueue } from "./transport.ts";

const conf = { voters: ["n1", "n2"], learners: [] };
const quiet = new Logger("test", "error", () => {});

function snapshotMessage(): Message {
  return newMessage({
    type: MessageType.Snapshot,
    groupId: 0,
    from: "n1",
    to: "n2",
    term: 1,
    snapshot: { meta: { index: 5, term: 1, conf }, data: new Uint8Array() },
  });
}

/** The begin frame of a snapshot at `index` (revision 1). */
function beginFrame(index: number): PeerFrame {
  const m = snapshotMessage();
  m.snapshot!.meta.index = index;
  return { kind: PeerFrameKind.SnapshotBegin, message: encodeMessage(m), revision: 1 };
}

/** A receiver staging in memory that counts how often it discarded its staging directory. */
function countingReceiver() {
  const fs = new MemFileSystem();
  let discarded = 0;
  const receiver = new SnapshotReceiver({
    openStaging: () => Engine.open("/staging", { fs }),
    discardStaging: () => {
      discarded++;
      return Promise.resolve();
    },
    deliver: () => {},
  }, quiet);
  return { receiver, discarded: () => discarded };
}

Deno.test("a snapshot sender gives up on a receiver that never answers", async () => {
  // Reads everything and answers nothing: a peer cut off without a reset looks like this.
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on("data", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  try {
    const port = (server.address() as net.AddressInfo).port;
    const sender = new SnapshotSender("n1", () => "c1", quiet, undefined, 300);
    await using engine = await Engine.open("/kv", { fs: new MemFileSystem() });
    const state = {
      index: 5,
      term: 1,
      conf,
      revision: 0,
      engine,
      release() {},
      capturedAtMs: 0,
    };
    const started = performance.now();
    const ok = await sender.send("n2", `127.0.0.1:${port}`, snapshotMessage(), state);
    assertEquals(ok, false);
    assertTrue(performance.now() - started < 5_000, "gave up within its idle timeout");
    assertEquals(sender.busy("n2"), false, "a later snapshot to n2 can start");
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

Deno.test("a snapshot receiver gives up on a sender that goes quiet, and takes the next transfer", async () => {
  const fs = new MemFileSystem();
  let staging: Engine | undefined;
  const receiver = new SnapshotReceiver(
    {
      openStaging: async () => (staging = await Engine.open("/staging", { fs })),
      discardStaging: async () => {},
      deliver: () => {},
    },
    quiet,
    300,
  );
  const replies: PeerFrame[] = [];
  const frames = new FrameQueue();
  frames.push({
    kind: PeerFrameKind.SnapshotBegin,
    message: encodeMessage(snapshotMessage()),
    revision: 0,
  });
  // The begin frame, then nothing: the sender's host died.
  await receiver.serve("n1", frames, (f) => replies.push(f));
  assertEquals(replies.map((f) => f.kind === PeerFrameKind.SnapshotAck && f.ok), [true, false]);
  const refusal = replies[1] as PeerFrame & { kind: PeerFrameKind.SnapshotAck };
  assertTrue(refusal.reason.includes("waiting for data"), refusal.reason);
  // The receiver is free again: a new transfer is not refused as "in progress".
  const again = new FrameQueue();
  again.end();
  const next: PeerFrame[] = [];
  await receiver.serve("n1", again, (f) => next.push(f));
  const reason = (next[0] as PeerFrame & { kind: PeerFrameKind.SnapshotAck }).reason;
  assertTrue(!reason.includes("in progress"), reason);
  await receiver.close();
  await staging?.close().catch(() => {});
});

Deno.test("a snapshot being installed is not discarded by a new transfer", async () => {
  const { receiver, discarded } = countingReceiver();
  const transfer = (index: number) => {
    const frames = new FrameQueue();
    frames.push(beginFrame(index));
    frames.push({ kind: PeerFrameKind.SnapshotEnd, totalRecords: 0 });
    frames.end();
    return frames;
  };
  const replies: PeerFrame[] = [];
  await receiver.serve("n1", transfer(5), (f) => replies.push(f));
  assertEquals(replies.map((f) => f.kind === PeerFrameKind.SnapshotAck && f.ok), [true, true]);
  const staged = receiver.takeForInstall(5, 1);
  assertTrue(staged !== undefined);
  const discardedBefore = discarded();
  // A newer snapshot arrives while the node is swapping the staged one in.
  const during: PeerFrame[] = [];
  await receiver.serve("n1", transfer(9), (f) => during.push(f));
  const refusal = during[0] as PeerFrame & { kind: PeerFrameKind.SnapshotAck };
  assertEquals(refusal.ok, false);
  assertTrue(refusal.reason.includes("installing"), refusal.reason);
  assertEquals(discarded(), discardedBefore, "the staged snapshot was left alone");
  receiver.adopted();
  await staged!.close();
});

Deno.test("a transfer whose first frame arrives after an install began is refused, and the staged snapshot kept", async () => {
  const { receiver, discarded } = countingReceiver();
  const done = new FrameQueue();
  done.push(beginFrame(5));
  done.push({ kind: PeerFrameKind.SnapshotEnd, totalRecords: 0 });
  done.end();
  await receiver.serve("n1", done, () => {});
  // A new transfer starts (the receiver is free), but its begin frame is still on its way.
  const late = new FrameQueue();
  const replies: PeerFrame[] = [];
  const serving = receiver.serve("n2", late, (f) => replies.push(f));
  const staged = receiver.takeForInstall(5, 1);
  assertTrue(staged !== undefined);
  const before = discarded();
  late.push(beginFrame(9));
  late.end();
  await serving;
  const refusal = replies.at(-1) as PeerFrame & { kind: PeerFrameKind.SnapshotAck };
  assertEquals(refusal.ok, false);
  assertTrue(refusal.reason.includes("installing"), refusal.reason);
  assertEquals(discarded(), before, "the snapshot being installed was left alone");
  receiver.adopted();
  await staged!.close();
});
