/**
 * HTTP/2 frames (RFC 9113 section 4 and 6): the wire constants, an
 * incremental reader that cuts a byte stream into frames, and builders for
 * the frames a server sends. Pure: no I/O.
 *
 *   frame := u24 length · u8 type · u8 flags · u32 (R bit + 31-bit stream id) · payload
 *
 * @module
 */

import { allocBytes } from "../../common/byte_pool.ts";
import { writeU32 } from "../../common/bytes.ts";

/** Frame types (RFC 9113 6). */
export const FrameType = {
  Data: 0,
  Headers: 1,
  Priority: 2,
  RstStream: 3,
  Settings: 4,
  PushPromise: 5,
  Ping: 6,
  GoAway: 7,
  WindowUpdate: 8,
  Continuation: 9,
} as const;

/** Frame flags. */
export const Flag = {
  EndStream: 0x1,
  Ack: 0x1,
  EndHeaders: 0x4,
  Padded: 0x8,
  Priority: 0x20,
} as const;

/** SETTINGS identifiers (RFC 9113 6.5.2). */
export const Setting = {
  HeaderTableSize: 1,
  EnablePush: 2,
  MaxConcurrentStreams: 3,
  InitialWindowSize: 4,
  MaxFrameSize: 5,
  MaxHeaderListSize: 6,
} as const;

/** Error codes of RST_STREAM and GOAWAY (RFC 9113 7). */
export const H2Error = {
  NoError: 0,
  ProtocolError: 1,
  InternalError: 2,
  FlowControlError: 3,
  SettingsTimeout: 4,
  StreamClosed: 5,
  FrameSizeError: 6,
  RefusedStream: 7,
  Cancel: 8,
  CompressionError: 9,
  EnhanceYourCalm: 11,
} as const;

/** What every HTTP/2 client sends first. */
export const clientPreface = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** The largest payload a frame may carry before SETTINGS_MAX_FRAME_SIZE is raised. */
export const defaultMaxFrameSize = 16_384;
/** The initial flow-control window of a connection and of each stream. */
export const defaultWindowSize = 65_535;
/** The largest flow-control window (2^31 - 1). */
export const maxWindowSize = 0x7fff_ffff;

/** One received frame. `payload` is a view into the reader's buffer, valid until the next feed. */
export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Uint8Array;
}

/** A violation that ends the connection with GOAWAY and `code`. */
export class ConnectionError extends Error {
  override name = "ConnectionError";
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/**
 * Cuts the byte stream after the preface into frames. Bytes that do not make
 * a whole frame yet are kept for the next feed; a frame longer than
 * `maxFrameSize` is a FRAME_SIZE_ERROR.
 */
export class FrameReader {
  #buffer: Uint8Array = new Uint8Array(0);
  /** `#buffer` is ours (appended into), not a caller's chunk. */
  #owned = false;
  #start = 0;
  #end = 0;

  constructor(private readonly maxFrameSize: number) {}

  /** Appends `chunk` and returns the complete frames it finishes. */
  feed(chunk: Uint8Array): Frame[] {
    this.#append(chunk);
    const frames: Frame[] = [];
    while (this.#end - this.#start >= 9) {
      const b = this.#buffer;
      const p = this.#start;
      const length = (b[p] << 16) | (b[p + 1] << 8) | b[p + 2];
      if (length > this.maxFrameSize) {
        throw new ConnectionError(
          H2Error.FrameSizeError,
          `frame of ${length} bytes exceeds the limit of ${this.maxFrameSize}`,
        );
      }
      if (this.#end - p < 9 + length) break;
      const streamId = ((b[p + 5] & 0x7f) << 24 | (b[p + 6] << 16) | (b[p + 7] << 8) | b[p + 8]) >>>
        0;
      frames.push({
        type: b[p + 3],
        flags: b[p + 4],
        streamId,
        payload: b.subarray(p + 9, p + 9 + length),
      });
      this.#start = p + 9 + length;
    }
    return frames;
  }

  #append(chunk: Uint8Array): void {
    const held = this.#end - this.#start;
    if (held === 0 && chunk.length >= 9) {
      // Common case: nothing held back, parse straight from the chunk.
      this.#buffer = chunk;
      this.#owned = false;
      this.#start = 0;
      this.#end = chunk.length;
      return;
    }
    if (this.#owned && this.#buffer.length - this.#end >= chunk.length) {
      // Room after what is held (frames handed out before lie before it, untouched).
      this.#buffer.set(chunk, this.#end);
      this.#end += chunk.length;
      return;
    }
    // Grown by doubling: a large frame arriving in small pieces is copied O(size) times
    // in all, not once per piece.
    const next = new Uint8Array(Math.max(held + chunk.length, 2 * held, 4096));
    next.set(this.#buffer.subarray(this.#start, this.#end));
    next.set(chunk, held);
    this.#buffer = next;
    this.#owned = true;
    this.#start = 0;
    this.#end = held + chunk.length;
  }
}

/** Encodes one frame. */
export function encodeFrame(
  type: number,
  flags: number,
  streamId: number,
  payload: Uint8Array = noPayload,
): Uint8Array {
  // Frames are copied into the connection's next socket write: pooled bytes suit them.
  const out = allocBytes(9 + payload.length);
  const n = payload.length;
  out[0] = n >>> 16;
  out[1] = (n >>> 8) & 0xff;
  out[2] = n & 0xff;
  out[3] = type;
  out[4] = flags;
  writeU32(out, 5, streamId & 0x7fff_ffff);
  out.set(payload, 9);
  return out;
}

const noPayload = new Uint8Array(0);

/** A SETTINGS frame with the given (id, value) pairs. */
export function settingsFrame(settings: [number, number][]): Uint8Array {
  const payload = new Uint8Array(6 * settings.length);
  const view = new DataView(payload.buffer);
  settings.forEach(([id, value], i) => {
    view.setUint16(6 * i, id);
    view.setUint32(6 * i + 2, value);
  });
  return encodeFrame(FrameType.Settings, 0, 0, payload);
}

/** A u32 payload frame (WINDOW_UPDATE, RST_STREAM). */
export function u32Frame(type: number, streamId: number, value: number): Uint8Array {
  const payload = new Uint8Array(4);
  writeU32(payload, 0, value);
  return encodeFrame(type, 0, streamId, payload);
}

/** A GOAWAY frame. */
export function goAwayFrame(lastStreamId: number, code: number, debug = ""): Uint8Array {
  const text = new TextEncoder().encode(debug);
  const payload = new Uint8Array(8 + text.length);
  const view = new DataView(payload.buffer);
  view.setUint32(0, lastStreamId & 0x7fff_ffff);
  view.setUint32(4, code);
  payload.set(text, 8);
  return encodeFrame(FrameType.GoAway, 0, 0, payload);
}

/**
 * HEADERS plus as many CONTINUATION frames as `block` needs at `maxFrameSize`.
 * The frames of one header block must not be interleaved with others.
 */
export function headerFrames(
  streamId: number,
  block: Uint8Array,
  endStream: boolean,
  maxFrameSize: number,
): Uint8Array[] {
  const frames: Uint8Array[] = [];
  let pos = 0;
  let first = true;
  do {
    const piece = block.subarray(pos, pos + maxFrameSize);
    pos += piece.length;
    const last = pos >= block.length;
    const flags = (last ? Flag.EndHeaders : 0) | (first && endStream ? Flag.EndStream : 0);
    frames.push(
      encodeFrame(first ? FrameType.Headers : FrameType.Continuation, flags, streamId, piece),
    );
    first = false;
  } while (pos < block.length);
  return frames;
}
