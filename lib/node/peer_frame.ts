/**
 * Byte format of the native peer channel that carries Raft traffic between
 * nodes (docs/FORMATS.md, "Peer channel"). The channel is a plain TCP
 * connection on the node's one listening port, told apart from gRPC by its
 * first four bytes (`RKVR`). HTTP/2 is not used between nodes: a native frame
 * costs a fraction of a gRPC call, and Deno 2.9's node:http2 can abort the
 * process when sessions close (denoland/deno#36788).
 *
 *   connection := magic "RKVR" · u8 version (1) · frame*
 *   frame      := u32 length (of kind + body) · u8 kind · body
 *   Hello (1)  := string clusterId · string fromNodeId · [uvarint voteQuietMs]   (first frame)
 *   Batch (2)  := uvarint count · count × length-prefixed raft message
 *   Refuse (3) := string reason                                (then close)
 *
 * A snapshot travels on a connection of its own (docs/FORMATS.md, "Snapshot stream"):
 *   SnapshotBegin (4) := bytes raftMessage · uvarint revision
 *   SnapshotAck (7)   := u8 ok · uvarint recordsHeld · string reason
 *   SnapshotData (5)  := uvarint firstRecord · uvarint count · u32 crc32(records) · bytes records
 *   SnapshotEnd (6)   := uvarint totalRecords
 *   record            := bytes key · bytes value · uvarint version · uvarint expiresAtMs
 *
 * @module
 */

import { PartialUnit } from "../common/partial_unit.ts";
import { ByteReader, ByteWriter, DecodeError } from "../common/bytes.ts";
import { maxAppendBytes } from "../common/limits.ts";

/** First bytes of a peer connection. */
export const peerMagic = new Uint8Array([0x52, 0x4b, 0x56, 0x52]); // "RKVR"
/** Peer channel format version. */
export const peerChannelVersion = 1;
/** Largest frame accepted: one full AppendEntries batch plus headroom. */
export const maxPeerFrameBytes = maxAppendBytes * 2;

/** Frame kinds. Never renumber. */
export const enum PeerFrameKind {
  Hello = 1,
  Batch = 2,
  Refuse = 3,
  SnapshotBegin = 4,
  SnapshotData = 5,
  SnapshotEnd = 6,
  SnapshotAck = 7,
}

/** A decoded peer frame. */
export type PeerFrame =
  | {
    kind: PeerFrameKind.Hello;
    clusterId: string;
    from: string;
    /** How long the sender ignores votes after hearing from its leader (read_lease.ts); absent from older senders. */
    voteQuietMs?: number;
  }
  | { kind: PeerFrameKind.Batch; messages: Uint8Array[] }
  | { kind: PeerFrameKind.Refuse; reason: string }
  | { kind: PeerFrameKind.SnapshotBegin; message: Uint8Array; revision: number }
  | {
    kind: PeerFrameKind.SnapshotData;
    firstRecord: number;
    count: number;
    crc32: number;
    records: Uint8Array;
  }
  | { kind: PeerFrameKind.SnapshotEnd; totalRecords: number }
  | { kind: PeerFrameKind.SnapshotAck; ok: boolean; recordsHeld: number; reason: string };

/** The bytes a connecting peer sends first: magic, version, Hello frame. */
export function encodeConnectionPreamble(
  clusterId: string,
  from: string,
  voteQuietMs?: number,
): Uint8Array {
  const hello = encodeFrame({ kind: PeerFrameKind.Hello, clusterId, from, voteQuietMs });
  const out = new Uint8Array(5 + hello.length);
  out.set(peerMagic, 0);
  out[4] = peerChannelVersion;
  out.set(hello, 5);
  return out;
}

/** Encodes one frame with its length header. */
export function encodeFrame(frame: PeerFrame): Uint8Array {
  const w = new ByteWriter(64);
  w.putU32(0).putU8(frame.kind);
  switch (frame.kind) {
    case PeerFrameKind.Hello:
      w.putString(frame.clusterId).putString(frame.from);
      if (frame.voteQuietMs !== undefined) w.putUvarint(frame.voteQuietMs);
      break;
    case PeerFrameKind.Batch:
      w.putUvarint(frame.messages.length);
      for (const m of frame.messages) w.putLengthPrefixed(m);
      break;
    case PeerFrameKind.Refuse:
      w.putString(frame.reason);
      break;
    case PeerFrameKind.SnapshotBegin:
      w.putLengthPrefixed(frame.message).putUvarint(frame.revision);
      break;
    case PeerFrameKind.SnapshotData:
      w.putUvarint(frame.firstRecord).putUvarint(frame.count).putU32(frame.crc32).putLengthPrefixed(
        frame.records,
      );
      break;
    case PeerFrameKind.SnapshotEnd:
      w.putUvarint(frame.totalRecords);
      break;
    case PeerFrameKind.SnapshotAck:
      w.putU8(frame.ok ? 1 : 0).putUvarint(frame.recordsHeld).putString(frame.reason);
      break;
  }
  w.setU32At(0, w.length - 4);
  return w.finish();
}

function decodeBody(kind: number, body: Uint8Array, at: number): PeerFrame {
  const r = new ByteReader(body);
  let frame: PeerFrame;
  switch (kind) {
    case PeerFrameKind.Hello:
      frame = { kind, clusterId: r.string(256), from: r.string(256) };
      if (r.remaining > 0) frame.voteQuietMs = r.uvarint();
      break;
    case PeerFrameKind.Batch: {
      const n = r.uvarint();
      const messages: Uint8Array[] = [];
      for (let i = 0; i < n; i++) messages.push(r.lengthPrefixed(maxPeerFrameBytes));
      frame = { kind, messages };
      break;
    }
    case PeerFrameKind.Refuse:
      frame = { kind, reason: r.string(4096) };
      break;
    case PeerFrameKind.SnapshotBegin:
      frame = { kind, message: r.lengthPrefixed(maxPeerFrameBytes), revision: r.uvarint() };
      break;
    case PeerFrameKind.SnapshotData:
      frame = {
        kind,
        firstRecord: r.uvarint(),
        count: r.uvarint(),
        crc32: r.u32(),
        records: r.lengthPrefixed(maxPeerFrameBytes),
      };
      break;
    case PeerFrameKind.SnapshotEnd:
      frame = { kind, totalRecords: r.uvarint() };
      break;
    case PeerFrameKind.SnapshotAck:
      frame = { kind, ok: r.u8() === 1, recordsHeld: r.uvarint(), reason: r.string(4096) };
      break;
    default:
      throw new DecodeError(`unknown peer frame kind ${kind}`, at);
  }
  r.expectEnd("peer frame");
  return frame;
}

/** The largest first frame an accepting side reads (a Hello: two short strings and a number). */
export const maxHelloFrameBytes = 1024;

/**
 * Incremental decoder: feed it whatever the socket delivers (frames split or
 * joined at any byte), get back complete frames. Raises DecodeError on a bad
 * magic, version, length or body — the caller closes the connection.
 */
export class PeerFrameDecoder {
  /** The preamble or a frame that the last chunk ended inside. */
  readonly #partial = new PartialUnit();
  #expectPreamble: boolean;
  /**
   * The accepting side's first frame must be a Hello (under 600 bytes): it is
   * held to this size, so a stranger on the port cannot make us allocate up
   * to a frame's 8 MiB before saying who it is.
   */
  #firstFrameLimit: number | undefined;
  /** Bytes consumed so far (for error offsets). */
  consumed = 0;

  /** `expectPreamble`: the stream starts with magic + version (the accepting side). */
  constructor(expectPreamble: boolean) {
    this.#expectPreamble = expectPreamble;
    this.#firstFrameLimit = expectPreamble ? maxHelloFrameBytes : undefined;
  }

  /** Appends bytes and returns every frame now complete. */
  push(chunk: Uint8Array): PeerFrame[] {
    const frames: PeerFrame[] = [];
    const partial = this.#partial;
    let pos = 0;
    while (partial.pending && pos < chunk.length) {
      pos = partial.fill(chunk, pos);
      if (!partial.full) break;
      const size = this.#unitSize(partial.bytes, 0);
      if (size > partial.bytes.length) {
        partial.grow(size);
        continue;
      }
      // The assembled buffer is ours: a frame body can be a view of it.
      const frame = this.#take(partial.take(), 0, size, false);
      if (frame) frames.push(frame);
    }
    if (partial.pending) return frames;
    for (;;) {
      const avail = chunk.length - pos;
      if (avail < 5) {
        if (avail > 0) partial.hold(chunk, pos, 5);
        break;
      }
      const size = this.#unitSize(chunk, pos);
      if (avail < size) {
        partial.hold(chunk, pos, size);
        break;
      }
      // Copy the body: the socket may reuse its buffers after this callback.
      const frame = this.#take(chunk, pos, size, true);
      if (frame) frames.push(frame);
      pos += size;
    }
    return frames;
  }

  /** Bytes of the unit whose 5-byte head is at `at` of `b` (validated). */
  #unitSize(b: Uint8Array, at: number): number {
    if (this.#expectPreamble) return 5;
    const length = ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
    const limit = this.#firstFrameLimit ?? maxPeerFrameBytes;
    if (length < 1 || length > limit) {
      throw new DecodeError(
        `peer frame length ${length} outside 1..${limit}${
          this.#firstFrameLimit === undefined ? "" : " (the hello frame)"
        }`,
        this.consumed,
      );
    }
    return 4 + length;
  }

  /** Consumes the whole unit at `at` of `b`: checks the preamble, or decodes the frame. */
  #take(b: Uint8Array, at: number, size: number, copyBody: boolean): PeerFrame | undefined {
    if (this.#expectPreamble) {
      for (let i = 0; i < 4; i++) {
        if (b[at + i] !== peerMagic[i]) {
          throw new DecodeError("not a rustkvd peer connection", this.consumed);
        }
      }
      const version = b[at + 4];
      if (version !== peerChannelVersion) {
        throw new DecodeError(`unsupported peer channel version ${version}`, this.consumed + 4);
      }
      this.#advance(5);
      this.#expectPreamble = false;
      return undefined;
    }
    const body = copyBody ? b.slice(at + 5, at + size) : b.subarray(at + 5, at + size);
    const frame = decodeBody(b[at + 4], body, this.consumed + 4);
    this.#firstFrameLimit = undefined;
    this.#advance(size);
    return frame;
  }

  #advance(n: number): void {
    this.consumed += n;
  }
}
