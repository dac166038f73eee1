/**
 * The server side of one HTTP/2 connection (RFC 9113), enough for gRPC:
 * streams, HPACK, SETTINGS, PING, GOAWAY, RST_STREAM and flow control in
 * both directions. It replaces node:http2 in the server process: Deno 2.9's
 * native HTTP/2 binding can abort the process when a session sends GOAWAY
 * (denoland/deno#36788), which the fault suite hit about once in twenty
 * schedules, and it costs far more per request than this does.
 *
 * Frames going out are collected and written with one socket write per
 * turn of the event loop, so replies that complete together share a write.
 *
 * @module
 */

import type net from "node:net";
import { setImmediate } from "node:timers";
import {
  clientPreface,
  ConnectionError,
  defaultMaxFrameSize,
  defaultWindowSize,
  encodeFrame,
  Flag,
  type Frame,
  FrameReader,
  FrameType,
  goAwayFrame,
  H2Error,
  headerFrames,
  maxWindowSize,
  Setting,
  settingsFrame,
  u32Frame,
} from "./frames.ts";
import { type HeaderField, HpackDecoder, HpackEncoder, HpackError } from "./hpack.ts";
import { copyBytes } from "../../common/byte_pool.ts";
import { IdTable } from "../../common/id_table.ts";
import { concatBytes, joinForWrite } from "../../common/bytes.ts";

/** Limits this server announces and enforces. */
export const h2Limits = {
  /** Streams a client may have open at once; more are refused (REFUSED_STREAM). */
  maxConcurrentStreams: 1000,
  /** Receive window of each stream (SETTINGS_INITIAL_WINDOW_SIZE). */
  streamWindow: 1 << 20,
  /** Receive window of the whole connection. */
  connectionWindow: 16 << 20,
  /** Largest frame payload we accept. */
  maxFrameSize: 1 << 20,
  /** Largest header block (HEADERS plus CONTINUATION) we accept, and largest decoded list. */
  maxHeaderBlockBytes: 64 << 10,
  /** CONTINUATION frames in one header block (a client splits 64 KiB in a few). */
  maxContinuationFrames: 64,
  /**
   * Bytes written to the socket and not yet taken by the client past which
   * we stop reading from it and refuse new streams (REFUSED_STREAM): a client
   * that does not read must not make us buffer its answers without bound.
   */
  maxWriteBacklogBytes: 8 << 20,
};

/** Why a stream ended before the server finished it. */
export type StreamAbort = "reset by the client" | "connection closed";

/** The callbacks a stream starts with (one function for all, not four closures per stream). */
function ignore(): void {}

/** One request stream. The gRPC layer sets the callbacks right after `onStream`. */
export class H2Stream {
  /** Request headers; a repeated name keeps its values joined with ", ". */
  readonly headers: Map<string, string>;
  /** Called with each piece of request body. */
  onData: (chunk: Uint8Array) => void = ignore;
  /** Called when the client half-closes (END_STREAM). */
  onEnd: () => void = ignore;
  /** Called when the stream dies before `finish` (client reset or connection loss). */
  onAbort: (why: StreamAbort) => void = ignore;
  /** Called whenever queued response bytes drop (flow control or the socket drained). */
  onDrain: () => void = ignore;

  /**
   * Receive window is returned by `credit` as the handler takes the body,
   * not as it arrives (client streams: a handler that falls behind holds
   * the client back instead of buffering everything it sends).
   */
  manualCredit = false;
  /** Bytes of response body waiting for flow-control window. */
  queuedBytes = 0;
  sendWindow: number;
  recvUnacked = 0;
  remoteEnded = false;
  closed = false;
  pending: Uint8Array[] = [];
  trailers: readonly HeaderField[] | undefined;

  constructor(
    readonly id: number,
    fields: HeaderField[],
    private readonly connection: H2ServerConnection,
    initialSendWindow: number,
  ) {
    this.headers = new Map();
    for (const [name, value] of fields) {
      const had = this.headers.get(name);
      this.headers.set(name, had === undefined ? value : `${had}, ${value}`);
    }
    this.sendWindow = initialSendWindow;
  }

  /** Returns `bytes` of receive window, taken by the handler (with `manualCredit`). */
  credit(bytes: number): void {
    this.connection.creditStream(this, bytes);
  }

  /** Sends the response headers (no END_STREAM). */
  respond(fields: readonly HeaderField[]): void {
    if (this.closed) return;
    this.connection.sendHeaders(this, fields, false);
  }

  /** Queues response body bytes; they go out as the peer's windows allow. */
  write(bytes: Uint8Array): void {
    if (this.closed || this.trailers) return;
    this.pending.push(bytes);
    this.queuedBytes += bytes.length;
    this.connection.pump(this);
  }

  /** Ends the response with `trailers` once every queued byte is out. */
  finish(trailers: readonly HeaderField[]): void {
    if (this.closed || this.trailers) return;
    this.trailers = trailers;
    this.connection.pump(this);
  }

  /** Abandons the stream with RST_STREAM. */
  reset(code: number = H2Error.Cancel): void {
    this.connection.resetStream(this, code);
  }
}

/** What the connection hands each new request to. */
export type StreamHandler = (stream: H2Stream) => void;

/** Serves HTTP/2 on one accepted socket whose first bytes may already have been read. */
export class H2ServerConnection {
  readonly #socket: net.Socket;
  readonly #onStream: StreamHandler;
  readonly #reader = new FrameReader(h2Limits.maxFrameSize);
  readonly #decoder = new HpackDecoder();
  /** Response header blocks, in wire order: the client's table of our fields. */
  readonly #encoder = new HpackEncoder();
  /** Open streams by id (an IdTable: see its module comment). */
  readonly #streams = new IdTable<H2Stream>();
  #preface = new Uint8Array(0);
  #prefaceDone = false;
  #lastStreamId = 0;
  #peerInitialWindow = defaultWindowSize;
  #peerMaxFrameSize = defaultMaxFrameSize;
  #sendWindow = defaultWindowSize;
  #recvUnacked = 0;
  #blocked = new Set<H2Stream>();
  /** HEADERS without END_HEADERS: the stream and the block so far. */
  #continuing:
    | { streamId: number; endStream: boolean; parts: Uint8Array[]; bytes: number }
    | undefined;
  #out: Uint8Array[] = [];
  #flushScheduled = false;
  /** Reading from the client stopped while our writes to it are backed up. */
  #readPaused = false;
  #goAwaySent = false;
  #peerGoingAway = false;
  #dead = false;

  constructor(socket: net.Socket, onStream: StreamHandler, head?: Uint8Array) {
    this.#socket = socket;
    this.#onStream = onStream;
    this.#queue(settingsFrame([
      [Setting.MaxConcurrentStreams, h2Limits.maxConcurrentStreams],
      [Setting.InitialWindowSize, h2Limits.streamWindow],
      [Setting.MaxFrameSize, h2Limits.maxFrameSize],
      [Setting.MaxHeaderListSize, h2Limits.maxHeaderBlockBytes],
      [Setting.EnablePush, 0],
    ]));
    this.#queue(u32Frame(FrameType.WindowUpdate, 0, h2Limits.connectionWindow - defaultWindowSize));
    socket.on("data", (chunk: Uint8Array) => this.#receive(chunk));
    socket.on("drain", () => this.#drained());
    socket.on("close", () => this.#teardown());
    socket.on("error", () => socket.destroy());
    if (head && head.length > 0) this.#receive(head);
  }

  /** Streams in progress. */
  get activeStreams(): number {
    return this.#streams.size;
  }

  /** Graceful close: GOAWAY, then the socket closes once in-flight streams finish. */
  close(): void {
    this.#sendGoAway(H2Error.NoError, "server shutting down");
    this.#peerGoingAway = true;
    this.#maybeEnd();
  }

  /** Drops the connection now. */
  destroy(): void {
    this.#socket.destroy();
    this.#teardown();
  }

  #receive(chunk: Uint8Array): void {
    if (this.#dead) return;
    try {
      if (!this.#prefaceDone) {
        const joined = new Uint8Array(this.#preface.length + chunk.length);
        joined.set(this.#preface);
        joined.set(chunk, this.#preface.length);
        if (joined.length < clientPreface.length) {
          if (!startsWith(clientPreface, joined)) {
            throw new ConnectionError(H2Error.ProtocolError, "not an HTTP/2 connection preface");
          }
          this.#preface = joined;
          return;
        }
        if (!startsWith(joined, clientPreface)) {
          throw new ConnectionError(H2Error.ProtocolError, "not an HTTP/2 connection preface");
        }
        this.#prefaceDone = true;
        chunk = joined.subarray(clientPreface.length);
      }
      for (const frame of this.#reader.feed(chunk)) this.#frame(frame);
    } catch (e) {
      if (e instanceof ConnectionError) {
        this.#fail(e.code, e.message);
      } else if (e instanceof HpackError) {
        this.#fail(H2Error.CompressionError, e.message);
      } else {
        this.#fail(H2Error.InternalError, (e as Error).message);
      }
    }
  }

  #frame(f: Frame): void {
    if (this.#continuing && f.type !== FrameType.Continuation) {
      throw new ConnectionError(H2Error.ProtocolError, "expected CONTINUATION");
    }
    switch (f.type) {
      case FrameType.Data:
        return this.#data(f);
      case FrameType.Headers:
        return this.#headers(f);
      case FrameType.Continuation:
        return this.#continuation(f);
      case FrameType.RstStream: {
        if (f.streamId === 0 || f.payload.length !== 4) {
          throw new ConnectionError(H2Error.ProtocolError, "bad RST_STREAM");
        }
        const s = this.#streams.get(f.streamId);
        if (s) this.#abort(s, "reset by the client");
        return;
      }
      case FrameType.Settings:
        return this.#settings(f);
      case FrameType.Ping:
        if (f.streamId !== 0 || f.payload.length !== 8) {
          throw new ConnectionError(H2Error.FrameSizeError, "bad PING");
        }
        if ((f.flags & Flag.Ack) === 0) {
          this.#queue(encodeFrame(FrameType.Ping, Flag.Ack, 0, f.payload.slice()));
        }
        return;
      case FrameType.GoAway:
        this.#peerGoingAway = true;
        this.#maybeEnd();
        return;
      case FrameType.WindowUpdate:
        return this.#windowUpdate(f);
      case FrameType.Priority:
        if (f.payload.length !== 5) {
          throw new ConnectionError(H2Error.FrameSizeError, "bad PRIORITY");
        }
        return;
      case FrameType.PushPromise:
        throw new ConnectionError(H2Error.ProtocolError, "a client may not push");
      default:
        return; // unknown frame types are ignored (RFC 9113 4.1)
    }
  }

  #settings(f: Frame): void {
    if (f.streamId !== 0) throw new ConnectionError(H2Error.ProtocolError, "SETTINGS on a stream");
    if (f.flags & Flag.Ack) return;
    if (f.payload.length % 6 !== 0) {
      throw new ConnectionError(H2Error.FrameSizeError, "SETTINGS length not a multiple of 6");
    }
    const view = new DataView(f.payload.buffer, f.payload.byteOffset, f.payload.length);
    for (let i = 0; i < f.payload.length; i += 6) {
      const id = view.getUint16(i);
      const value = view.getUint32(i + 2);
      if (id === Setting.InitialWindowSize) {
        if (value > maxWindowSize) {
          throw new ConnectionError(H2Error.FlowControlError, "initial window too large");
        }
        const delta = value - this.#peerInitialWindow;
        this.#peerInitialWindow = value;
        for (const s of this.#streams.values()) s.sendWindow += delta;
      } else if (id === Setting.MaxFrameSize) {
        if (value < defaultMaxFrameSize || value > 0xff_ffff) {
          throw new ConnectionError(H2Error.ProtocolError, "bad SETTINGS_MAX_FRAME_SIZE");
        }
        this.#peerMaxFrameSize = value;
      } else if (id === Setting.HeaderTableSize) {
        this.#encoder.setMaxTableSize(value);
      }
    }
    this.#queue(encodeFrame(FrameType.Settings, Flag.Ack, 0));
    for (const s of this.#streams.values()) this.pump(s);
  }

  #headers(f: Frame): void {
    const id = f.streamId;
    if (id === 0) throw new ConnectionError(H2Error.ProtocolError, "HEADERS on stream 0");
    let payload = f.payload;
    let pad = 0;
    if (f.flags & Flag.Padded) {
      if (payload.length < 1) throw new ConnectionError(H2Error.ProtocolError, "bad padding");
      pad = payload[0];
      payload = payload.subarray(1);
    }
    if (f.flags & Flag.Priority) {
      if (payload.length < 5) throw new ConnectionError(H2Error.ProtocolError, "bad priority");
      payload = payload.subarray(5);
    }
    if (pad > payload.length) throw new ConnectionError(H2Error.ProtocolError, "padding too long");
    payload = payload.subarray(0, payload.length - pad);
    const endStream = (f.flags & Flag.EndStream) !== 0;
    // A block that ends here is decoded before the next read; only a block
    // continued in later frames must outlive the reader's buffer.
    const endHeaders = (f.flags & Flag.EndHeaders) !== 0;
    if (payload.length > h2Limits.maxHeaderBlockBytes) {
      throw new ConnectionError(
        H2Error.EnhanceYourCalm,
        `header block over ${h2Limits.maxHeaderBlockBytes} bytes`,
      );
    }
    this.#continuing = {
      streamId: id,
      endStream,
      parts: [endHeaders ? payload : copyBytes(payload)],
      bytes: payload.length,
    };
    if (endHeaders) this.#headerBlockDone();
  }

  #continuation(f: Frame): void {
    const c = this.#continuing;
    if (!c || f.streamId !== c.streamId) {
      throw new ConnectionError(H2Error.ProtocolError, "unexpected CONTINUATION");
    }
    c.parts.push(copyBytes(f.payload));
    c.bytes += f.payload.length;
    if (c.parts.length > 1 + h2Limits.maxContinuationFrames) {
      throw new ConnectionError(
        H2Error.EnhanceYourCalm,
        `header block in over ${h2Limits.maxContinuationFrames} CONTINUATION frames`,
      );
    }
    if (c.bytes > h2Limits.maxHeaderBlockBytes) {
      throw new ConnectionError(
        H2Error.EnhanceYourCalm,
        `header block over ${h2Limits.maxHeaderBlockBytes} bytes`,
      );
    }
    if (f.flags & Flag.EndHeaders) this.#headerBlockDone();
  }

  #headerBlockDone(): void {
    const c = this.#continuing!;
    this.#continuing = undefined;
    const block = c.parts.length === 1 ? c.parts[0] : concatBytes(...c.parts);
    // Decode even for a stream we refuse: the HPACK table must stay in step.
    const fields = this.#decoder.decode(block, h2Limits.maxHeaderBlockBytes);
    const existing = this.#streams.get(c.streamId);
    if (existing) {
      // Trailers from the client: only END_STREAM matters to gRPC.
      if (!c.endStream) {
        throw new ConnectionError(H2Error.ProtocolError, "trailers without END_STREAM");
      }
      this.#remoteEnd(existing);
      return;
    }
    if (c.streamId <= this.#lastStreamId || c.streamId % 2 === 0) {
      throw new ConnectionError(H2Error.ProtocolError, `stream id ${c.streamId} reused or even`);
    }
    this.#lastStreamId = c.streamId;
    if (
      this.#goAwaySent || this.#streams.size >= h2Limits.maxConcurrentStreams ||
      this.#socket.writableLength > h2Limits.maxWriteBacklogBytes
    ) {
      this.#queue(u32Frame(FrameType.RstStream, c.streamId, H2Error.RefusedStream));
      return;
    }
    const stream = new H2Stream(c.streamId, fields, this, this.#peerInitialWindow);
    this.#streams.set(stream.id, stream);
    this.#onStream(stream);
    if (c.endStream) this.#remoteEnd(stream);
  }

  #data(f: Frame): void {
    if (f.streamId === 0) throw new ConnectionError(H2Error.ProtocolError, "DATA on stream 0");
    // Flow control counts the whole payload, padding included.
    this.#recvUnacked += f.payload.length;
    if (this.#recvUnacked > h2Limits.connectionWindow) {
      throw new ConnectionError(H2Error.FlowControlError, "connection window exceeded");
    }
    if (this.#recvUnacked >= h2Limits.connectionWindow / 2) {
      this.#queue(u32Frame(FrameType.WindowUpdate, 0, this.#recvUnacked));
      this.#recvUnacked = 0;
    }
    const s = this.#streams.get(f.streamId);
    if (!s || s.remoteEnded) {
      if (f.streamId > this.#lastStreamId) {
        throw new ConnectionError(H2Error.ProtocolError, "DATA on an idle stream");
      }
      if (!s) this.#queue(u32Frame(FrameType.RstStream, f.streamId, H2Error.StreamClosed));
      return;
    }
    let payload = f.payload;
    if (f.flags & Flag.Padded) {
      const pad = payload[0] ?? 0;
      if (payload.length < 1 || pad >= payload.length) {
        throw new ConnectionError(H2Error.ProtocolError, "bad DATA padding");
      }
      payload = payload.subarray(1, payload.length - pad);
    }
    s.recvUnacked += f.payload.length;
    if (s.recvUnacked > h2Limits.streamWindow) {
      this.resetStream(s, H2Error.FlowControlError);
      return;
    }
    const endStream = (f.flags & Flag.EndStream) !== 0;
    if (s.manualCredit) {
      // Padding never reaches the handler: its window comes back at once.
      const padding = f.payload.length - payload.length;
      if (padding > 0 && !endStream) this.creditStream(s, padding);
    } else if (!endStream && s.recvUnacked >= h2Limits.streamWindow / 2) {
      this.#queue(u32Frame(FrameType.WindowUpdate, s.id, s.recvUnacked));
      s.recvUnacked = 0;
    }
    if (payload.length > 0) s.onData(payload);
    if (endStream) this.#remoteEnd(s);
  }

  /** Gives a stream's client `bytes` more window (a manual-credit stream's handler took them). */
  creditStream(s: H2Stream, bytes: number): void {
    if (bytes <= 0 || s.closed || s.remoteEnded || this.#streams.get(s.id) !== s) return;
    s.recvUnacked -= bytes;
    this.#queue(u32Frame(FrameType.WindowUpdate, s.id, bytes));
  }

  #windowUpdate(f: Frame): void {
    if (f.payload.length !== 4) {
      throw new ConnectionError(H2Error.FrameSizeError, "bad WINDOW_UPDATE");
    }
    const increment = new DataView(f.payload.buffer, f.payload.byteOffset, 4).getUint32(0) &
      0x7fff_ffff;
    if (f.streamId === 0) {
      if (increment === 0) {
        throw new ConnectionError(H2Error.ProtocolError, "zero window increment");
      }
      this.#sendWindow += increment;
      if (this.#sendWindow > maxWindowSize) {
        throw new ConnectionError(H2Error.FlowControlError, "connection window overflow");
      }
      const blocked = [...this.#blocked];
      this.#blocked.clear();
      for (const s of blocked) this.pump(s);
      return;
    }
    const s = this.#streams.get(f.streamId);
    if (!s) return;
    if (increment === 0 || s.sendWindow + increment > maxWindowSize) {
      this.resetStream(s, increment === 0 ? H2Error.ProtocolError : H2Error.FlowControlError);
      return;
    }
    s.sendWindow += increment;
    this.pump(s);
  }

  #remoteEnd(s: H2Stream): void {
    if (s.remoteEnded) return;
    s.remoteEnded = true;
    s.onEnd();
  }

  /** Sends a header block for `s` (the response headers, or trailers with END_STREAM). */
  sendHeaders(s: H2Stream, fields: readonly HeaderField[], endStream: boolean): void {
    for (
      const frame of headerFrames(
        s.id,
        this.#encoder.encode(fields),
        endStream,
        this.#peerMaxFrameSize,
      )
    ) {
      this.#queue(frame);
    }
  }

  /** Moves what the windows allow of `s`'s queued body out, then its trailers. */
  pump(s: H2Stream): void {
    if (s.closed) return;
    const before = s.queuedBytes;
    while (s.pending.length > 0) {
      const allowed = Math.min(s.sendWindow, this.#sendWindow, this.#peerMaxFrameSize);
      if (allowed <= 0) {
        if (this.#sendWindow <= 0) this.#blocked.add(s);
        break;
      }
      const head = s.pending[0];
      const piece = head.length <= allowed ? head : head.subarray(0, allowed);
      if (piece === head) s.pending.shift();
      else s.pending[0] = head.subarray(allowed);
      s.sendWindow -= piece.length;
      this.#sendWindow -= piece.length;
      s.queuedBytes -= piece.length;
      this.#queue(encodeFrame(FrameType.Data, 0, s.id, piece));
    }
    if (s.pending.length === 0 && s.trailers) {
      this.sendHeaders(s, s.trailers, true);
      if (!s.remoteEnded) {
        // The response is complete; the client need not send the rest (RFC 9113 8.1).
        this.#queue(u32Frame(FrameType.RstStream, s.id, H2Error.NoError));
      }
      this.#close(s);
      return;
    }
    if (s.queuedBytes < before) s.onDrain();
  }

  /** Sends RST_STREAM for `s` and forgets it. */
  resetStream(s: H2Stream, code: number): void {
    if (s.closed) return;
    this.#queue(u32Frame(FrameType.RstStream, s.id, code));
    this.#abort(s, "reset by the client");
  }

  #abort(s: H2Stream, why: StreamAbort): void {
    if (s.closed) return;
    this.#close(s);
    s.onAbort(why);
  }

  #close(s: H2Stream): void {
    s.closed = true;
    s.pending = [];
    s.queuedBytes = 0;
    this.#streams.delete(s.id);
    this.#blocked.delete(s);
    this.#maybeEnd();
  }

  #drained(): void {
    if (this.#readPaused) {
      this.#readPaused = false;
      this.#socket.resume();
    }
    for (const s of this.#streams.values()) s.onDrain();
  }

  #sendGoAway(code: number, reason: string): void {
    if (this.#goAwaySent || this.#dead) return;
    this.#goAwaySent = true;
    this.#queue(goAwayFrame(this.#lastStreamId, code, reason));
  }

  #fail(code: number, reason: string): void {
    this.#sendGoAway(code, reason);
    this.#flush();
    this.#socket.end();
    this.#teardown();
  }

  #maybeEnd(): void {
    if (this.#peerGoingAway && this.#streams.size === 0 && !this.#dead) {
      this.#sendGoAway(H2Error.NoError, "");
      this.#flush();
      this.#socket.end();
      this.#dead = true;
    }
  }

  #teardown(): void {
    if (this.#dead && this.#streams.size === 0) return;
    this.#dead = true;
    for (const s of this.#streams.values()) this.#abort(s, "connection closed");
  }

  #queue(frame: Uint8Array): void {
    if (this.#dead) return;
    this.#out.push(frame);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#out.length === 0 || this.#socket.destroyed) {
      this.#out = [];
      return;
    }
    const chunks = this.#out;
    this.#out = [];
    this.#socket.write(joinForWrite(chunks));
    if (!this.#readPaused && this.#socket.writableLength > h2Limits.maxWriteBacklogBytes) {
      this.#readPaused = true; // until "drain": see maxWriteBacklogBytes
      this.#socket.pause();
    }
  }
}

function startsWith(a: Uint8Array, prefix: Uint8Array): boolean {
  if (a.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (a[i] !== prefix[i]) return false;
  return true;
}
