import net from "node:net";
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { type Message, MessageType, newMessage } from "../raft/types.ts";
import { decodeMessage, encodeMessage } from "../raft/codec.ts";
import { Engine } from "../storage/engine.ts";
import { MemFileSystem } from "../storage/mem_fs.ts";
import { Logger } from "./logger.ts";
import { type PeerFrame, PeerFrameKind } from "./peer_frame.ts";
import {
  decodeSnapshotMeta,
  encodeSnapshotDescriptor,
  encodeSnapshotMeta,
  type SnapshotAckFrame,
  type SnapshotChannel,
  snapshotMetaKey,
  SnapshotReceiver,
  snapshotRevisionKey,
  SnapshotSender,
} from "./snapshot.ts";
import { WriteBatch } from "../storage/write_batch.ts";
import { fromUtf8, utf8 } from "../common/bytes.ts";
import { FrameQueue } from "./transport.ts";
import { TestCluster } from "../raft/testing.ts";

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

/** The frames of a whole transfer of an empty snapshot at `index`. */
function transfer(index: number): FrameQueue {
  const frames = new FrameQueue();
  frames.push(beginFrame(index));
  frames.push({ kind: PeerFrameKind.SnapshotEnd, totalRecords: 0 });
  frames.end();
  return frames;
}

/** countingReceiver, whose core declines what it delivers (the node has stopped). */
function countingReceiverDeclining() {
  return countingReceiver(false);
}

/** A receiver staging in memory that counts how often it discarded its staging directory. */
function countingReceiver(coreTakes = true) {
  const fs = new MemFileSystem();
  let discarded = 0;
  const receiver = new SnapshotReceiver({
    openStaging: () => Engine.open("/staging", { fs }),
    discardStaging: () => {
      discarded++;
      return Promise.resolve();
    },
    deliver: () => coreTakes,
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
      deliver: () => true,
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
  await receiver.serve("n1", transfer(5), () => {});
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

/**
 * A sender's channel straight into `receiver.serve` (as node `from`), with the frames it
 * carried; the sender may break it after `breakAfterData` data frames.
 */
function channelInto(receiver: SnapshotReceiver, sent: PeerFrame[]) {
  return (): SnapshotChannel => {
    const frames = new FrameQueue();
    const acks: SnapshotAckFrame[] = [];
    let wake: (() => void) | undefined;
    let serving: Promise<void> | undefined;
    let closed = false;
    return {
      open: () => Promise.resolve(),
      write(frame) {
        if (closed) return Promise.reject(new Error("closed"));
        sent.push(frame);
        if (frame.kind === PeerFrameKind.SnapshotBegin) {
          const from = decodeMessage(frame.message).from;
          serving = receiver.serve(from, frames, (f) => {
            acks.push(f as SnapshotAckFrame);
            wake?.();
          });
        }
        frames.push(frame);
        return Promise.resolve();
      },
      async nextAck() {
        while (acks.length === 0) {
          if (closed) throw new Error("closed");
          await new Promise<void>((r) => (wake = r));
        }
        return acks.shift()!;
      },
      close() {
        closed = true;
        frames.end();
        wake?.();
        void serving;
      },
    };
  };
}

/** A receiver staging in memory whose core takes (or refuses) what it delivers. */
function stagingReceiver(coreTakes = true) {
  const fs = new MemFileSystem();
  let discarded = 0;
  let staging: Engine | undefined;
  const receiver = new SnapshotReceiver({
    openStaging: async () => (staging = await Engine.open("/staging", { fs })),
    discardStaging: () => {
      discarded++;
      return Promise.resolve();
    },
    deliver: () => coreTakes,
  }, quiet);
  return { receiver, discarded: () => discarded, staging: () => staging };
}

/** A leader's engine with `keys` written at revisions 1.., and a capture of it. */
async function capturedWith(keys: string[], extra: (b: WriteBatch) => void = () => {}) {
  const engine = await Engine.open("/kv", { fs: new MemFileSystem() });
  const batch = new WriteBatch();
  keys.forEach((k, i) => batch.put(utf8(k), utf8(`v-${k}`), { version: i + 1 }));
  extra(batch);
  await engine.write(batch);
  const state = {
    index: 5,
    term: 1,
    conf,
    revision: keys.length,
    engine,
    release() {},
    capturedAtMs: 0,
  };
  return { engine, state };
}

Deno.test("a snapshot leaves out the sender's records of its own past installs", async () => {
  // A leader that once caught up by snapshot holds its own snapshot-meta and -revision records.
  const { engine, state } = await capturedWith(["a", "b", "c"], (b) => {
    b.put(snapshotMetaKey, encodeSnapshotMeta(2, 1, conf, 1), { version: 1 });
    b.put(snapshotRevisionKey, encodeSnapshotDescriptor(1), { version: 1 });
  });
  const { receiver, staging } = stagingReceiver();
  const sent: PeerFrame[] = [];
  const sender = new SnapshotSender("n1", () => "c1", quiet, channelInto(receiver, sent));
  try {
    assertEquals(await sender.send("n2", "n2:1", snapshotMessage(), state), true);
    const end = sent.find((f) => f.kind === PeerFrameKind.SnapshotEnd) as PeerFrame & {
      kind: PeerFrameKind.SnapshotEnd;
    };
    assertEquals(end.totalRecords, 4, "a, b, c and the snapshot's own revision record");
    const meta = decodeSnapshotMeta((await staging()!.get(snapshotMetaKey))!.value);
    assertEquals([meta.index, meta.term], [5, 1], "the receiver's own record of this snapshot");
  } finally {
    await engine.close();
    await staging()?.close().catch(() => {});
  }
});

Deno.test("a transfer resumes only from the same sender's stream; another sender starts over", async () => {
  const { receiver, staging } = stagingReceiver();
  const partial = (from: string) => {
    const m = snapshotMessage();
    m.from = from;
    const frames = new FrameQueue();
    frames.push({ kind: PeerFrameKind.SnapshotBegin, message: encodeMessage(m), revision: 1 });
    return frames;
  };
  // n1's transfer stages nothing and breaks; the staging is kept for n1 to resume.
  const first = partial("n1");
  first.end();
  const acks: PeerFrame[] = [];
  await receiver.serve("n1", first, (f) => acks.push(f));
  assertEquals(receiver.recordsHeld(5, 1, "n1"), 0);
  // A resume is asked by sender: n3 (a new leader at the same index) is told to start over.
  assertEquals(receiver.recordsHeld(5, 1, "n3"), 0);
  const fromN3 = partial("n3");
  fromN3.end();
  const before = staging();
  await receiver.serve("n3", fromN3, () => {});
  assertTrue(staging() !== before, "n3's stream is staged on a new engine");
  await before?.close().catch(() => {});
  await receiver.close();
});

Deno.test("a snapshot the core does not take is discarded; one it takes is kept until installed", async () => {
  const refused = stagingReceiver(false);
  await refused.receiver.serve("n1", transfer(5), () => {});
  assertEquals(refused.discarded(), 2, "discarded at the start and once the core declined it");
  assertEquals(refused.receiver.takeForInstall(5, 1), undefined);

  const taken = stagingReceiver(true);
  await taken.receiver.serve("n1", transfer(5), () => {});
  // Before the install begins, a newer transfer must not discard what the core will install.
  const replies: PeerFrame[] = [];
  await taken.receiver.serve("n1", transfer(9), (f) => replies.push(f));
  const refusal = replies[0] as SnapshotAckFrame;
  assertEquals(refusal.ok, false);
  const engine = taken.receiver.takeForInstall(5, 1);
  assertTrue(engine !== undefined, "still staged for the install");
  taken.receiver.adopted();
  await engine!.close();
});

Deno.test("a staging write that failed starts the next transfer over on a new staging engine", async () => {
  const fs = new MemFileSystem();
  let opened = 0;
  let failNext = true;
  const receiver = new SnapshotReceiver({
    openStaging: async () => {
      opened++;
      const engine = await Engine.open(`/staging${opened}`, { fs });
      const write = engine.write.bind(engine);
      engine.write = (batch, opts) => {
        if (failNext) {
          failNext = false;
          return Promise.reject(new Error("no space left on device"));
        }
        return write(batch, opts);
      };
      return engine;
    },
    discardStaging: () => Promise.resolve(),
    deliver: () => true,
  }, quiet);
  const { engine, state } = await capturedWith(["a", "b"]);
  const sender = new SnapshotSender("n1", () => "c1", quiet, channelInto(receiver, []));
  try {
    assertEquals(await sender.send("n2", "n2:1", snapshotMessage(), state), false);
    assertEquals(await sender.send("n2", "n2:1", snapshotMessage(), state), true);
    assertEquals(opened, 2, "the broken staging engine was not reused");
    const staged = receiver.takeForInstall(5, 1)!;
    assertEquals(fromUtf8((await staged.get(utf8("b")))!.value), "v-b");
    receiver.adopted();
    await staged.close();
  } finally {
    await engine.close();
  }
});

Deno.test("a copy of a snapshot delivered while that snapshot is being installed is not reserved", async () => {
  // A real core behind the receiver, delivering as kv_node.ts does.
  const c = new TestCluster(["n1", "n2", "n3"]);
  const n2 = c.node("n2");
  const snapshotAt = (index: number, from: string, term: number): Message =>
    newMessage({
      type: MessageType.Snapshot,
      groupId: 1,
      from,
      to: "n2",
      term,
      snapshot: {
        meta: { index, term: 1, conf: { voters: ["n1", "n2", "n3"], learners: [] } },
        data: new Uint8Array(),
      },
    });
  const fs = new MemFileSystem();
  let opened = 0;
  const receiver = new SnapshotReceiver({
    openStaging: () => Engine.open(`/staging${++opened}`, { fs }),
    discardStaging: () => Promise.resolve(),
    deliver: (m) => {
      n2.step(m);
      const pending = n2.pendingSnapshot();
      return pending?.index === m.snapshot!.meta.index && pending.term === m.snapshot!.meta.term;
    },
  }, quiet);
  const whole = (m: Message) => {
    const frames = new FrameQueue();
    frames.push({ kind: PeerFrameKind.SnapshotBegin, message: encodeMessage(m), revision: 1 });
    frames.push({ kind: PeerFrameKind.SnapshotEnd, totalRecords: 0 });
    frames.end();
    return frames;
  };
  const acks: SnapshotAckFrame[] = [];
  const reply = (f: PeerFrame) => acks.push(f as SnapshotAckFrame);
  await receiver.serve("n1", whole(snapshotAt(100, "n1", 1)), reply);
  // The node installs it: its Ready is out, the staged engine adopted, the Ready not advanced.
  const rd = n2.ready();
  const installed = receiver.takeForInstall(100, 1)!;
  receiver.adopted();
  // Meanwhile a new leader streams the same snapshot: the core declines it (it holds 100).
  await receiver.serve("n3", whole(snapshotAt(100, "n3", 2)), reply);
  n2.advance(rd);
  // A later snapshot is taken, not refused as "installing the previous snapshot".
  await receiver.serve("n3", whole(snapshotAt(500, "n3", 2)), reply);
  assertEquals(acks.at(-1)!.ok, true, acks.at(-1)!.reason);
  await installed.close();
  const next = receiver.takeForInstall(500, 1);
  receiver.adopted();
  await next?.close();
  await receiver.close();
});

Deno.test("a transfer that ends after the receiver closed leaves the staging directory alone", async () => {
  const { receiver, discarded } = countingReceiverDeclining();
  const frames = new FrameQueue();
  frames.push(beginFrame(5));
  const serving = receiver.serve("n1", frames, () => {});
  await new Promise((r) => setTimeout(r, 10));
  const before = discarded();
  await receiver.close(); // the node stops; its next run cleans the directory up at start
  frames.push({ kind: PeerFrameKind.SnapshotEnd, totalRecords: 0 });
  frames.end();
  await serving;
  assertEquals(discarded(), before);
});
