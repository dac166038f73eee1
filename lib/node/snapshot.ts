/**
 * State-machine snapshots between nodes (docs/FORMATS.md, "Snapshot stream").
 *
 * Sending: the leader captures a consistent point — applied index A, its term,
 * the membership and the revision R, with R pinned in the engine so compaction
 * keeps it — and streams every live key at R (system keys included) over a
 * connection of its own, in CRC-checked frames of about 1 MiB, ending with a
 * synthetic record that makes the receiver's revision exactly R.
 *
 * Receiving: records go into a staging engine, durably per frame; the
 * receiver counts the records it holds, and a broken transfer of the same
 * snapshot resumes from there (a restart discards the staging engine). When the stream is complete the staging
 * engine is sealed (its snapshot metadata stored as a system key) and the
 * Raft snapshot message is stepped into the core; when the core hands the
 * snapshot back in a Ready, the node swaps the staging engine in
 * (KVNode.installSnapshot).
 *
 * @module
 */

import { splitHostPort } from "../common/host_port.ts";
import net from "node:net";
import { ByteReader, ByteWriter, DecodeError, equalBytes } from "../common/bytes.ts";
import { crc32 } from "../common/crc.ts";
import { snapshotChunkBytes, snapshotIdleTimeoutMs } from "../common/limits.ts";
import { failpoint } from "../common/failpoints.ts";
import { within } from "../common/within.ts";
import { decodeMessage, encodeMessage } from "../raft/codec.ts";
import { type ConfState, type Message, MessageType } from "../raft/types.ts";
import type { Engine } from "../storage/engine.ts";
import { WriteBatch } from "../storage/write_batch.ts";
import type { Logger } from "./logger.ts";
import {
  encodeConnectionPreamble,
  encodeFrame,
  type PeerFrame,
  PeerFrameDecoder,
  PeerFrameKind,
} from "./peer_frame.ts";
import { systemKey } from "./state_machine.ts";

/** System key holding the revision a snapshot was taken at (written as its last record). */
export const snapshotRevisionKey = systemKey("m", "snapshot-revision");
/** System key holding the installed snapshot's Raft metadata (index, term, conf). */
export const snapshotMetaKey = systemKey("m", "snapshot-meta");

/** Keys a node writes about itself, never streamed in a snapshot. */
function isNodeLocalKey(key: Uint8Array): boolean {
  return equalBytes(key, snapshotMetaKey) || equalBytes(key, snapshotRevisionKey);
}

/** A consistent point of the state machine to stream. */
export interface CapturedState {
  index: number;
  term: number;
  conf: ConfState;
  revision: number;
  engine: Engine;
  /** Releases the engine pin on `revision`. */
  release(): void;
  /** When it was captured (a failed transfer is retried from the same capture for a while). */
  capturedAtMs: number;
}

/** Encodes Raft snapshot metadata for the snapshot-meta system key. */
export function encodeSnapshotMeta(
  index: number,
  term: number,
  conf: ConfState,
  revision: number,
): Uint8Array {
  const w = new ByteWriter(64);
  w.putU8(1).putUvarint(index).putUvarint(term).putUvarint(revision);
  w.putUvarint(conf.voters.length);
  for (const v of conf.voters) w.putString(v);
  w.putUvarint(conf.learners.length);
  for (const l of conf.learners) w.putString(l);
  return w.finish();
}

/** Decodes the snapshot-meta system key. */
export function decodeSnapshotMeta(
  bytes: Uint8Array,
): { index: number; term: number; conf: ConfState; revision: number } {
  const r = new ByteReader(bytes);
  if (r.u8() !== 1) throw new DecodeError("unknown snapshot meta format", 0);
  const index = r.uvarint();
  const term = r.uvarint();
  const revision = r.uvarint();
  const voters: string[] = [];
  for (let n = r.uvarint(); n > 0; n--) voters.push(r.string());
  const learners: string[] = [];
  for (let n = r.uvarint(); n > 0; n--) learners.push(r.string());
  return { index, term, conf: { voters, learners }, revision };
}

/** The descriptor carried in the Raft snapshot's `data`: the revision. */
export function encodeSnapshotDescriptor(revision: number): Uint8Array {
  return new ByteWriter(16).putU8(1).putUvarint(revision).finish();
}

function putRecord(
  w: ByteWriter,
  key: Uint8Array,
  value: Uint8Array,
  version: number,
  expiresAtMs: number,
): void {
  w.putLengthPrefixed(key).putLengthPrefixed(value).putUvarint(version).putUvarint(expiresAtMs);
}

function readRecords(bytes: Uint8Array, count: number, batch: WriteBatch): void {
  const r = new ByteReader(bytes);
  for (let i = 0; i < count; i++) {
    const key = r.lengthPrefixed().slice();
    const value = r.lengthPrefixed().slice();
    const version = r.uvarint();
    const expiresAtMs = r.uvarint();
    batch.put(key, value, { version, expiresAtMs: expiresAtMs > 0 ? expiresAtMs : undefined });
  }
  r.expectEnd("snapshot records");
}

/** The acknowledgement frame a snapshot receiver answers with. */
export type SnapshotAckFrame = PeerFrame & { kind: PeerFrameKind.SnapshotAck };

/**
 * One snapshot transfer's connection as the sender sees it: frames out,
 * acknowledgements in. The receiver acknowledges the begin frame with the
 * records it already holds (where the transfer resumes) and the end frame
 * with the outcome. Implementations: the native peer channel (below) and
 * gRPC's InstallSnapshot (lib/server/grpc_snapshot_channel.ts).
 */
export interface SnapshotChannel {
  /** Connects and introduces the sender (cluster id, node id). */
  open(): Promise<void>;
  /** Sends one frame, waiting while the connection is backed up. */
  write(frame: PeerFrame): Promise<void>;
  /** The next acknowledgement; rejects when the connection fails. */
  nextAck(): Promise<SnapshotAckFrame>;
  /** Drops the connection (idempotent). */
  close(): void;
}

/** Opens a channel to the peer listening at `addr`. */
export type SnapshotChannelFactory = (
  addr: string,
  clusterId: string,
  selfId: string,
) => SnapshotChannel;

/** A snapshot connection of its own on the peer's native port. */
export class NativeSnapshotChannel implements SnapshotChannel {
  #socket: net.Socket | undefined;
  #acks: PeerFrame[] = [];
  #wake: (() => void) | undefined;
  #failure: Error | undefined;

  constructor(readonly addr: string, readonly clusterId: string, readonly selfId: string) {}

  async open(): Promise<void> {
    const { host, port } = splitHostPort(this.addr);
    const socket = net.connect({ host, port });
    this.#socket = socket;
    socket.setNoDelay(true);
    const decoder = new PeerFrameDecoder(false);
    const wake = () => this.#wake?.();
    socket.on("data", (chunk: Uint8Array) => {
      try {
        this.#acks.push(...decoder.push(chunk));
      } catch (e) {
        this.#failure = e as Error;
      }
      wake();
    });
    socket.on("error", (e: Error) => {
      this.#failure = e;
      wake();
    });
    socket.on("close", () => {
      this.#failure ??= new Error("connection closed");
      wake();
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    socket.write(encodeConnectionPreamble(this.clusterId, this.selfId));
  }

  async write(frame: PeerFrame): Promise<void> {
    const socket = this.#socket!;
    if (this.#failure) throw this.#failure;
    if (!socket.write(encodeFrame(frame))) {
      await new Promise<void>((r) => {
        const done = () => {
          socket.off("drain", done);
          socket.off("close", done);
          r();
        };
        socket.on("drain", done);
        socket.on("close", done);
      });
    }
  }

  async nextAck(): Promise<SnapshotAckFrame> {
    for (let i = 0; i < 100_000; i++) {
      const f = this.#acks.shift();
      if (f?.kind === PeerFrameKind.SnapshotAck) return f;
      if (f?.kind === PeerFrameKind.Refuse) throw new Error(`refused: ${f.reason}`);
      if (this.#failure) throw this.#failure;
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
    throw new Error("no acknowledgement");
  }

  close(): void {
    this.#socket?.destroy();
  }
}

/** Streams snapshots to peers. */
export class SnapshotSender {
  #active = new Set<string>();
  /** Breaks the first transfer after this many records (failpoint snapshot-send-break-after). */
  #breakAfter = Number(failpoint("snapshot-send-break-after") ?? "NaN");
  /** Snapshots streamed completely (for status and tests). */
  sent = 0;

  constructor(
    readonly selfId: string,
    readonly clusterId: () => string,
    readonly log: Logger,
    readonly openChannel: SnapshotChannelFactory = (addr, clusterId, selfId) =>
      new NativeSnapshotChannel(addr, clusterId, selfId),
    /** How long a transfer waits on the receiver (to connect, drain, acknowledge). */
    readonly idleTimeoutMs = snapshotIdleTimeoutMs,
  ) {}

  /** True while a transfer to `to` runs. */
  busy(to: string): boolean {
    return this.#active.has(to);
  }

  /**
   * Streams `state` to `to` at `addr` with the Raft message `m` (its
   * snapshot meta replaced by the captured point). Resolves true when the
   * receiver acknowledged the whole snapshot. The caller owns `state` (and
   * its pin): after a failure it may send the same capture again, and the
   * receiver resumes where the broken transfer stopped.
   */
  async send(to: string, addr: string, m: Message, state: CapturedState): Promise<boolean> {
    this.#active.add(to);
    const message: Message = {
      ...m,
      snapshot: {
        meta: { index: state.index, term: state.term, conf: state.conf },
        data: encodeSnapshotDescriptor(state.revision),
      },
    };
    const channel = this.openChannel(addr, this.clusterId(), this.selfId);
    const idle = this.idleTimeoutMs;
    const write = (frame: PeerFrame) =>
      within(channel.write(frame), idle, `snapshot to ${to}: waiting to send`);
    const nextAck = () =>
      within(channel.nextAck(), idle, `snapshot to ${to}: waiting for an acknowledgement`);
    const started = Date.now();
    try {
      await within(channel.open(), idle, `snapshot to ${to}: connecting`);
      await write({
        kind: PeerFrameKind.SnapshotBegin,
        message: encodeMessage(message),
        revision: state.revision,
      });
      const first = await nextAck();
      if (!first.ok) throw new Error(first.reason);
      const resumeFrom = first.recordsHeld;
      let seq = 0;
      let frameFirst = 0;
      let count = 0;
      const w = new ByteWriter(snapshotChunkBytes + 4096);
      const flushFrame = async () => {
        if (count === 0) return;
        const records = w.finish();
        await write({
          kind: PeerFrameKind.SnapshotData,
          firstRecord: frameFirst,
          count,
          crc32: crc32(records),
          records,
        });
        w.reset();
        count = 0;
      };
      const add = async (
        key: Uint8Array,
        value: Uint8Array,
        version: number,
        expiresAtMs: number,
      ) => {
        if (seq === this.#breakAfter && seq > resumeFrom) {
          this.#breakAfter = Number.NaN;
          await flushFrame();
          throw new Error(
            `failpoint snapshot-send-break-after: breaking the transfer after ${seq} records`,
          );
        }
        if (seq >= resumeFrom) {
          if (count === 0) frameFirst = seq;
          putRecord(w, key, value, version, expiresAtMs);
          count++;
          if (w.length >= snapshotChunkBytes) await flushFrame();
        }
        seq++;
      };
      for await (const kv of state.engine.scan({ atVersion: state.revision, nowMs: 0 })) {
        // This node's own records of a snapshot it once installed: not part of the state (the
        // receiver writes its own), and only some replicas hold them.
        if (isNodeLocalKey(kv.key)) continue;
        await add(kv.key, kv.value, kv.version, kv.expiresAtMs ?? 0);
      }
      await add(snapshotRevisionKey, encodeSnapshotDescriptor(state.revision), state.revision, 0);
      await flushFrame();
      await write({ kind: PeerFrameKind.SnapshotEnd, totalRecords: seq });
      const last = await nextAck();
      if (!last.ok) throw new Error(last.reason);
      this.sent++;
      this.log.info("snapshot sent", {
        peer: to,
        index: state.index,
        revision: state.revision,
        records: seq,
        resumedFrom: resumeFrom,
        ms: Date.now() - started,
      });
      return true;
    } catch (e) {
      this.log.warn("snapshot transfer failed", {
        peer: to,
        index: state.index,
        error: (e as Error).message,
      });
      return false;
    } finally {
      channel.close();
      this.#active.delete(to);
    }
  }
}

/** What the receiver needs from its node. */
export interface SnapshotReceiverHost {
  /** Opens (creating when absent) the staging engine. */
  openStaging(): Promise<Engine>;
  /** Deletes the staging engine. */
  discardStaging(): Promise<void>;
  /**
   * Steps the completed snapshot's Raft message into the core; true when the
   * core took it to install (false: it holds that index already).
   */
  deliver(m: Message): boolean;
}

interface Staged {
  index: number;
  term: number;
  /**
   * The node streaming it: a transfer resumes only from the same sender's
   * stream (another replica at the same index may order or hold its records
   * differently, and resuming by a count would skip records).
   */
  sender: string;
  revision: number;
  engine: Engine;
  /** Records durably written to the staging engine. */
  recordsHeld: number;
  complete: boolean;
}

/** Receives snapshot streams into the staging engine. */
export class SnapshotReceiver {
  #staged: Staged | undefined;
  #busy = false;
  /**
   * The staged snapshot the Raft core took to install, from delivery until
   * it is installed: a new transfer meanwhile would discard it.
   */
  #installing: Staged | undefined;

  constructor(
    readonly host: SnapshotReceiverHost,
    readonly log: Logger,
    /** How long a transfer waits for the sender's next frame. */
    readonly idleTimeoutMs = snapshotIdleTimeoutMs,
  ) {}

  /**
   * The staged snapshot if it is complete and matches index and term, handed
   * over for installing (new transfers are refused from its delivery until
   * `adopted`: one would discard the staging directory the install moves).
   */
  takeForInstall(index: number, term: number): Engine | undefined {
    const s = this.#staged;
    if (!s || !s.complete || s.index !== index || s.term !== term) return undefined;
    this.#installing = s;
    return s.engine;
  }

  /**
   * Records already held of `sender`'s snapshot at `index`/`term` (0 when
   * another or none is staged): where a resumed transfer starts. Answers
   * gRPC's probe.
   */
  recordsHeld(index: number, term: number, sender: string): number {
    return this.#stagedFrom(index, term, sender)?.recordsHeld ?? 0;
  }

  /** The staged snapshot if it is `sender`'s at `index`/`term`. */
  #stagedFrom(index: number, term: number, sender: string): Staged | undefined {
    const s = this.#staged;
    return s && s.index === index && s.term === term && s.sender === sender ? s : undefined;
  }

  /** Closes and deletes the staged engine (broken, or a snapshot the core did not take). */
  async #discard(): Promise<void> {
    const s = this.#staged;
    this.#staged = undefined;
    if (s) await s.engine.close().catch(() => {});
    // After close() the data dir may belong to the next process: leave it to its start.
    if (!this.#closed) await this.host.discardStaging();
  }

  #closed = false;

  /** Forgets the staged engine (it was installed and is now the node's engine). */
  adopted(): void {
    if (this.#staged === this.#installing) this.#staged = undefined;
    this.#installing = undefined;
  }

  /** Closes a staging engine left open (node shutdown). */
  async close(): Promise<void> {
    this.#closed = true;
    const s = this.#staged;
    this.#staged = undefined;
    if (s) await s.engine.close().catch(() => {});
  }

  /**
   * Serves one snapshot connection. `frames` yields the frames after Hello;
   * `reply` writes a frame back.
   */
  async serve(
    from: string,
    frames: AsyncIterableIterator<PeerFrame>,
    reply: (f: PeerFrame) => void,
  ): Promise<void> {
    if (this.#busy || this.#installing !== undefined) {
      reply({
        kind: PeerFrameKind.SnapshotAck,
        ok: false,
        recordsHeld: 0,
        reason: this.#busy
          ? "another snapshot transfer is in progress"
          : "installing the previous snapshot",
      });
      return;
    }
    this.#busy = true;
    // A write to the staging engine that failed leaves it broken (its WAL keeps the error):
    // a later transfer must start again on a new one, not resume on this.
    let stagingFailed = false;
    const stage = async <T>(op: () => Promise<T>): Promise<T> => {
      try {
        return await op();
      } catch (e) {
        stagingFailed = true;
        throw e;
      }
    };
    try {
      const nextFrame = () =>
        within(frames.next(), this.idleTimeoutMs, `snapshot from ${from}: waiting for data`);
      const begin = (await nextFrame()).value as PeerFrame | undefined;
      if (!begin || begin.kind !== PeerFrameKind.SnapshotBegin) {
        throw new Error("expected a snapshot begin frame");
      }
      const m = decodeMessage(begin.message);
      if (m.type !== MessageType.Snapshot || !m.snapshot) {
        throw new Error("the begin frame holds no snapshot message");
      }
      const { index, term } = m.snapshot.meta;
      if (failpoint("snapshot-receive-refuse") !== undefined) {
        throw new Error("failpoint snapshot-receive-refuse: refusing the transfer");
      }
      // An install may have begun while this transfer waited for its first frame.
      if (this.#installing !== undefined) throw new Error("installing the previous snapshot");
      let staged = this.#stagedFrom(index, term, m.from);
      if (!staged) {
        await this.#discard();
        staged = {
          index,
          term,
          sender: m.from,
          revision: begin.revision,
          engine: await this.host.openStaging(),
          recordsHeld: 0,
          complete: false,
        };
        this.#staged = staged;
      }
      const held = staged.recordsHeld;
      if (staged.complete) {
        reply({ kind: PeerFrameKind.SnapshotAck, ok: true, recordsHeld: held, reason: "" });
      } else {
        reply({ kind: PeerFrameKind.SnapshotAck, ok: true, recordsHeld: held, reason: "" });
        let expected = held;
        for (;;) {
          const next = await nextFrame();
          if (next.done) throw new Error(`stream ended after ${expected} records`);
          const f = next.value;
          if (f.kind === PeerFrameKind.SnapshotData) {
            if (f.firstRecord !== expected) {
              throw new Error(`records out of order: got ${f.firstRecord}, expected ${expected}`);
            }
            if (crc32(f.records) !== f.crc32) {
              throw new Error(
                `checksum mismatch in records ${f.firstRecord}..${f.firstRecord + f.count}`,
              );
            }
            const batch = new WriteBatch();
            readRecords(f.records, f.count, batch);
            await stage(() => staged!.engine.write(batch, { sync: true }));
            expected += f.count;
            staged.recordsHeld = expected;
          } else if (f.kind === PeerFrameKind.SnapshotEnd) {
            if (f.totalRecords !== expected) {
              throw new Error(`expected ${f.totalRecords} records, received ${expected}`);
            }
            break;
          } else {
            throw new Error(`unexpected frame ${f.kind} in a snapshot stream`);
          }
        }
        const seal = new WriteBatch().put(
          snapshotMetaKey,
          encodeSnapshotMeta(index, term, m.snapshot.meta.conf, staged.revision),
          { version: staged.revision },
        );
        await stage(async () => {
          await staged!.engine.write(seal, { sync: true, appliedIndex: index });
          await staged!.engine.compactHistory(staged!.revision);
          await staged!.engine.flush();
        });
        staged.complete = true;
        this.log.info("snapshot received", {
          from,
          index,
          term,
          revision: staged.revision,
          records: expected,
        });
      }
      if (this.host.deliver(m)) {
        this.#installing = staged;
      } else {
        // The core holds this index already: nothing will install it, so free its copy.
        this.log.info("the received snapshot is behind this node's log; discarded", { index });
        await this.#discard();
      }
      reply({ kind: PeerFrameKind.SnapshotAck, ok: true, recordsHeld: index, reason: "" });
    } catch (e) {
      this.log.warn("snapshot receive failed", { from, error: (e as Error).message });
      if (stagingFailed) await this.#discard().catch(() => {});
      reply({
        kind: PeerFrameKind.SnapshotAck,
        ok: false,
        recordsHeld: 0,
        reason: (e as Error).message,
      });
    } finally {
      this.#busy = false;
    }
  }
}
