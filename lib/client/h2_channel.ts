/**
 * A gRPC client channel for unary calls over our own HTTP/2 connection on
 * `Deno.connect`, beside grpc-js. Why: through Deno's node:http2 layer a
 * grpc-js unary call cost the calling process about 250 µs of CPU (a
 * stack-capturing Node error object per call among it), so a load generator
 * on the same 2 cores as the servers measured itself, not the servers. Here
 * a call is a cached header block, one HEADERS and one DATA frame, and every
 * frame queued in one turn of the event loop leaves in one socket write.
 *
 * The frame layer and HPACK are the server's (lib/server/h2/); this module
 * adds the client side of RFC 9113: the preface and SETTINGS exchange, odd
 * stream ids, the peer's concurrency limit, flow control in both directions
 * (requests wait for window; our receive windows are large and replenished),
 * PING and SETTINGS acknowledgements, GOAWAY (calls the server did not take
 * fail as unavailable and go to a new connection), RST_STREAM, deadlines
 * (`grpc-timeout` sent, RST_STREAM + DEADLINE_EXCEEDED when they pass) and
 * cancellation. Streaming calls (Watch) stay on grpc-js.
 *
 * @module
 */

import { splitHostPort } from "../common/host_port.ts";
import {
  clientPreface,
  ConnectionError,
  encodeFrame,
  Flag,
  FrameReader,
  FrameType,
  H2Error,
  headerFrames,
  Setting,
  settingsFrame,
  u32Frame,
} from "../server/h2/frames.ts";
import { HpackDecoder, HpackEncoder } from "../server/h2/hpack.ts";
import { concatBytes, joinForWrite } from "../common/bytes.ts";
import { type DeadlineEntry, DeadlineQueue } from "../common/deadline_queue.ts";
import { copyBytes } from "../common/byte_pool.ts";
import { IdTable } from "../common/id_table.ts";
import { frameGrpcMessage } from "../server/h2/grpc.ts";
import { SystemClock } from "../common/clock.ts";

/** Deadlines of every call in flight on every channel of this process, behind one timer. */
const callDeadlines = new DeadlineQueue(new SystemClock());

/** gRPC status codes this channel produces itself (the server sends any). */
export const ChannelStatus = {
  Ok: 0,
  Cancelled: 1,
  Unknown: 2,
  DeadlineExceeded: 4,
  ResourceExhausted: 8,
  Internal: 13,
  Unavailable: 14,
} as const;

/** How a unary call ended. `response` is the message bytes when `code` is 0. */
export interface UnaryResult {
  code: number;
  details: string;
  /**
   * The call failed after its request went out (the connection was lost or
   * reset, or the server cancelled the stream): the server may have acted on
   * it. Unset when it was never sent or the server said it was not processed.
   */
  maybeProcessed?: boolean;
  /** Response headers and trailers (lowercase names, last value wins). */
  metadata: Map<string, string>;
  response?: Uint8Array;
}

/** A unary method as proto-loader defines it: its path and message codecs. */
export interface UnaryMethod {
  path: string;
  // deno-lint-ignore no-explicit-any
  requestSerialize(request: any): Uint8Array;
  // deno-lint-ignore no-explicit-any
  responseDeserialize(bytes: Uint8Array): any;
}

/** Our receive window per stream: a whole response never waits for a WINDOW_UPDATE. */
const streamReceiveWindow = 64 << 20;
/** Our receive window of the connection, replenished once half of it is used. */
const connectionReceiveWindow = 1 << 30;
/** Largest frame payload we accept. */
const maxReceiveFrame = 1 << 20;
/** Stream ids are 31 bits: a connection that used this many ids is replaced. */
const lastUsableStreamId = 0x7fff_fff0;

interface PendingCall {
  path: string;
  message: Uint8Array;
  deadlineMs: number;
  resolve: (r: UnaryResult) => void;
  /** Its deadline while it waits for a free stream (the peer's concurrency limit). */
  waitDeadline?: DeadlineEntry;
}

/** A call leaves the queue of calls waiting for a stream: its waiting deadline goes with it. */
function leftQueue(c: PendingCall): PendingCall {
  if (c.waitDeadline !== undefined) callDeadlines.remove(c.waitDeadline);
  c.waitDeadline = undefined;
  return c;
}

interface OpenStream {
  id: number;
  resolve: (r: UnaryResult) => void;
  /** Request bytes not yet sent for lack of flow-control window. */
  unsent: Uint8Array | undefined;
  sendWindow: number;
  metadata: Map<string, string>;
  headerBlock: Uint8Array[] | undefined;
  headerEndsStream: boolean;
  httpStatus: string;
  data: Uint8Array[];
  deadline: DeadlineEntry | undefined;
}

/** One HTTP/2 connection; replaced by the channel when it fails or drains. */
class H2ClientConnection {
  readonly #conn: Deno.TcpConn;
  readonly #reader = new FrameReader(maxReceiveFrame);
  readonly #decoder = new HpackDecoder();
  /** Request header blocks, in wire order: the server's table of our fields. */
  readonly #encoder = new HpackEncoder();
  /** Open streams by id (an IdTable: see its module comment). */
  readonly #streams = new IdTable<OpenStream>();
  readonly #blocked = new Set<OpenStream>();
  readonly #waiting: PendingCall[] = [];
  #out: Uint8Array[] = [];
  #outBytes = 0;
  #flushing = false;
  #nextId = 1;
  #peerMaxFrame = 16_384;
  #peerInitialWindow = 65_535;
  #peerMaxStreams = 100; // until the peer's SETTINGS say otherwise
  #sendWindow = 65_535;
  #receivedSinceUpdate = 0;
  /** Header block fragments of a stream we no longer track (decoded anyway, then dropped). */
  #orphanBlock: Uint8Array[] | undefined;
  /** Set once the connection may take no new calls (GOAWAY, failure, ids used up, close). */
  draining = false;
  closed = false;

  constructor(conn: Deno.TcpConn, readonly authority: string, readonly onClosed: () => void) {
    this.#conn = conn;
    this.#queue(clientPreface);
    this.#queue(settingsFrame([
      [Setting.EnablePush, 0],
      [Setting.InitialWindowSize, streamReceiveWindow],
      [Setting.MaxFrameSize, maxReceiveFrame],
    ]));
    this.#queue(u32Frame(FrameType.WindowUpdate, 0, connectionReceiveWindow - 65_535));
    this.#readLoop();
  }

  call(c: PendingCall): void {
    if (this.#streams.size >= this.#peerMaxStreams) {
      const timeoutMs = Math.max(1, Math.ceil(c.deadlineMs - Date.now()));
      c.waitDeadline = callDeadlines.add(callDeadlines.now() + timeoutMs, () => {
        c.waitDeadline = undefined;
        const i = this.#waiting.indexOf(c);
        if (i < 0) return;
        this.#waiting.splice(i, 1);
        c.resolve({
          code: ChannelStatus.DeadlineExceeded,
          details: "Deadline exceeded (waiting for a free stream)",
          metadata: new Map(),
        });
      });
      this.#waiting.push(c);
      return;
    }
    this.#start(c);
  }

  /** Takes every waiting call out of the queue. */
  #takeWaiting(): PendingCall[] {
    return this.#waiting.splice(0).map(leftQueue);
  }

  #start(c: PendingCall): void {
    const id = this.#nextId;
    this.#nextId += 2;
    if (this.#nextId >= lastUsableStreamId) this.draining = true;
    const s: OpenStream = {
      id,
      resolve: c.resolve,
      unsent: undefined,
      sendWindow: this.#peerInitialWindow,
      metadata: new Map(),
      headerBlock: undefined,
      headerEndsStream: false,
      httpStatus: "",
      data: [],
      deadline: undefined,
    };
    this.#streams.set(id, s);
    const timeoutMs = Math.max(1, Math.ceil(c.deadlineMs - Date.now()));
    s.deadline = callDeadlines.add(callDeadlines.now() + timeoutMs, () => {
      s.deadline = undefined;
      this.#reset(s, H2Error.Cancel);
      this.#finish(s, ChannelStatus.DeadlineExceeded, "Deadline exceeded");
    });
    const block = this.#headerBlock(c.path, timeoutMs);
    for (const f of headerFrames(id, block, false, this.#peerMaxFrame)) this.#queue(f);
    s.unsent = frameGrpcMessage(c.message);
    this.#sendData(s);
  }

  /** The request's header block; after a path's first call its fields are table indexes. */
  #headerBlock(path: string, timeoutMs: number): Uint8Array {
    return this.#encoder.encode([
      [":method", "POST"],
      [":scheme", "http"],
      [":path", path],
      [":authority", this.authority],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
      ["user-agent", "rustkvd-h2"],
      ["grpc-timeout", `${timeoutMs}m`],
    ]);
  }

  /** Sends as much of the stream's request as the windows allow; the last frame ends it. */
  #sendData(s: OpenStream): void {
    let rest = s.unsent!;
    while (rest.length > 0) {
      const n = Math.min(rest.length, this.#peerMaxFrame, this.#sendWindow, s.sendWindow);
      if (n <= 0) break;
      const last = n === rest.length;
      this.#queue(
        encodeFrame(FrameType.Data, last ? Flag.EndStream : 0, s.id, rest.subarray(0, n)),
      );
      this.#sendWindow -= n;
      s.sendWindow -= n;
      rest = rest.subarray(n);
    }
    if (rest.length === 0) {
      s.unsent = undefined;
      this.#blocked.delete(s);
    } else {
      s.unsent = rest;
      this.#blocked.add(s);
    }
  }

  #queue(frame: Uint8Array): void {
    this.#out.push(frame);
    this.#outBytes += frame.length;
    if (!this.#flushing) {
      this.#flushing = true;
      queueMicrotask(() => this.#flush());
    }
  }

  /** Writes everything queued, in one write per batch, until nothing is left. */
  async #flush(): Promise<void> {
    try {
      while (this.#out.length > 0 && !this.closed) {
        const parts = this.#out;
        this.#out = [];
        this.#outBytes = 0;
        const bytes = joinForWrite(parts);
        let off = 0;
        while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
      }
    } catch (e) {
      this.#fail(`write failed: ${(e as Error).message}`);
    } finally {
      this.#flushing = false;
    }
  }

  async #readLoop(): Promise<void> {
    const buf = new Uint8Array(256 * 1024);
    let reason = "connection closed by the server";
    try {
      for (;;) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        // A copy: the reader may hold a partial frame across reads, and `buf` is reused.
        // Frames are views of this private copy; header blocks are decoded at once.
        for (const f of this.#reader.feed(copyBytes(buf.subarray(0, n)))) this.#onFrame(f);
        if (this.closed) return;
      }
    } catch (e) {
      reason = e instanceof ConnectionError
        ? `protocol error: ${e.message}`
        : `connection lost: ${(e as Error).message}`;
    }
    this.#fail(reason);
  }

  #onFrame(f: { type: number; flags: number; streamId: number; payload: Uint8Array }): void {
    switch (f.type) {
      case FrameType.Data:
        return this.#onData(f.streamId, f.flags, f.payload);
      case FrameType.Headers:
      case FrameType.Continuation:
        return this.#onHeaders(f.type, f.streamId, f.flags, f.payload);
      case FrameType.RstStream: {
        const s = this.#streams.get(f.streamId);
        if (!s) return;
        const code = new DataView(f.payload.buffer, f.payload.byteOffset).getUint32(0);
        if (code === H2Error.RefusedStream) {
          this.#finish(
            s,
            ChannelStatus.Unavailable,
            "stream refused by the server (not processed)",
          );
        } else if (code === H2Error.Cancel) {
          this.#finish(
            s,
            ChannelStatus.Cancelled,
            "stream cancelled by the server",
            undefined,
            true,
          );
        } else {
          this.#finish(
            s,
            ChannelStatus.Internal,
            `stream reset by the server (code ${code})`,
            undefined,
            true,
          );
        }
        return;
      }
      case FrameType.Settings:
        if (f.flags & Flag.Ack) return;
        this.#onSettings(f.payload);
        this.#queue(encodeFrame(FrameType.Settings, Flag.Ack, 0));
        return;
      case FrameType.Ping:
        if (!(f.flags & Flag.Ack)) this.#queue(encodeFrame(FrameType.Ping, Flag.Ack, 0, f.payload));
        return;
      case FrameType.GoAway: {
        const last = new DataView(f.payload.buffer, f.payload.byteOffset).getUint32(0) &
          0x7fff_ffff;
        this.draining = true;
        for (const s of this.#streams.values()) {
          if (s.id > last) {
            this.#finish(s, ChannelStatus.Unavailable, "the server is going away (not processed)");
          }
        }
        for (const c of this.#takeWaiting()) {
          c.resolve(unavailable("the server is going away (not processed)"));
        }
        this.#closeIfIdle();
        return;
      }
      case FrameType.WindowUpdate: {
        const inc = new DataView(f.payload.buffer, f.payload.byteOffset).getUint32(0) &
          0x7fff_ffff;
        if (f.streamId === 0) this.#sendWindow += inc;
        else {
          const s = this.#streams.get(f.streamId);
          if (s) s.sendWindow += inc;
        }
        for (const s of [...this.#blocked]) this.#sendData(s);
        return;
      }
      default:
        return; // PRIORITY, PUSH_PROMISE (disabled), unknown types: ignored (RFC 9113 4.1)
    }
  }

  #onSettings(payload: Uint8Array): void {
    const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
    for (let at = 0; at + 6 <= payload.length; at += 6) {
      const id = view.getUint16(at);
      const value = view.getUint32(at + 2);
      if (id === Setting.MaxFrameSize) this.#peerMaxFrame = value;
      else if (id === Setting.HeaderTableSize) this.#encoder.setMaxTableSize(value);
      else if (id === Setting.MaxConcurrentStreams) this.#peerMaxStreams = value;
      else if (id === Setting.InitialWindowSize) {
        const delta = value - this.#peerInitialWindow;
        this.#peerInitialWindow = value;
        for (const s of this.#streams.values()) s.sendWindow += delta;
      }
    }
    this.#startWaiting();
    for (const s of [...this.#blocked]) this.#sendData(s);
  }

  #onData(id: number, flags: number, payload: Uint8Array): void {
    this.#receivedSinceUpdate += payload.length;
    if (this.#receivedSinceUpdate >= connectionReceiveWindow / 2) {
      this.#queue(u32Frame(FrameType.WindowUpdate, 0, this.#receivedSinceUpdate));
      this.#receivedSinceUpdate = 0;
    }
    const s = this.#streams.get(id);
    if (!s) return; // a stream we already finished (deadline, reset)
    let body = payload;
    if (flags & Flag.Padded) body = payload.subarray(1, payload.length - payload[0]);
    // Its own copy: decoded byte fields are views of it, and a caller may keep them long after.
    if (body.length > 0) s.data.push(body.slice());
    if (flags & Flag.EndStream) this.#complete(s);
  }

  #onHeaders(type: number, id: number, flags: number, payload: Uint8Array): void {
    const s = this.#streams.get(id);
    let block = payload;
    if (type === FrameType.Headers) {
      let start = 0;
      let end = payload.length;
      if (flags & Flag.Padded) {
        start = 1;
        end -= payload[0];
      }
      if (flags & Flag.Priority) start += 5;
      block = payload.subarray(start, end);
      if (s) {
        s.headerBlock = [];
        s.headerEndsStream = (flags & Flag.EndStream) !== 0;
      } else this.#orphanBlock = [];
    }
    const parts = s ? s.headerBlock : this.#orphanBlock;
    parts?.push(block);
    if (!(flags & Flag.EndHeaders)) return;
    // Every block goes through the decoder, also for streams we dropped: the table is shared.
    const fields = this.#decoder.decode(concat(parts ?? []));
    if (!s) {
      this.#orphanBlock = undefined;
      return;
    }
    s.headerBlock = undefined;
    for (const [name, value] of fields) {
      if (name === ":status") s.httpStatus = value;
      else s.metadata.set(name, value);
    }
    if (s.headerEndsStream) this.#complete(s);
  }

  #complete(s: OpenStream): void {
    const m = s.metadata;
    const status = m.get("grpc-status");
    if (status === undefined) {
      const http = s.httpStatus || "none";
      this.#finish(
        s,
        http === "200" ? ChannelStatus.Unknown : ChannelStatus.Unavailable,
        `no grpc-status in the response (HTTP status ${http})`,
      );
      return;
    }
    const code = Number(status);
    const details = decodeGrpcMessage(m.get("grpc-message") ?? "");
    if (code !== ChannelStatus.Ok) {
      this.#finish(s, code, details);
      return;
    }
    const body = concat(s.data);
    if (body.length < 5 || body[0] !== 0) {
      this.#finish(
        s,
        ChannelStatus.Internal,
        body.length < 5 ? "the response carried no message" : "compressed responses are not used",
      );
      return;
    }
    const length = new DataView(body.buffer, body.byteOffset).getUint32(1);
    if (length !== body.length - 5) {
      this.#finish(s, ChannelStatus.Internal, "the response message length does not match");
      return;
    }
    this.#finish(s, ChannelStatus.Ok, details, body.subarray(5));
  }

  #finish(
    s: OpenStream,
    code: number,
    details: string,
    response?: Uint8Array,
    maybeProcessed = false,
  ): void {
    if (!this.#streams.delete(s.id)) return;
    this.#blocked.delete(s);
    if (s.deadline !== undefined) callDeadlines.remove(s.deadline);
    s.resolve(
      maybeProcessed
        ? { code, details, metadata: s.metadata, response, maybeProcessed }
        : { code, details, metadata: s.metadata, response },
    );
    this.#startWaiting();
    this.#closeIfIdle();
  }

  /** Starts waiting calls while the peer's concurrency limit allows. */
  #startWaiting(): void {
    while (this.#waiting.length > 0 && this.#streams.size < this.#peerMaxStreams) {
      this.#start(leftQueue(this.#waiting.shift()!));
    }
  }

  /** Cancels a call from our side. */
  cancel(resolve: (r: UnaryResult) => void): void {
    const i = this.#waiting.findIndex((c) => c.resolve === resolve);
    if (i >= 0) {
      leftQueue(this.#waiting.splice(i, 1)[0]).resolve(cancelled());
      return;
    }
    for (const s of this.#streams.values()) {
      if (s.resolve !== resolve) continue;
      this.#reset(s, H2Error.Cancel);
      this.#finish(s, ChannelStatus.Cancelled, "cancelled by the caller");
      return;
    }
  }

  #reset(s: OpenStream, code: number): void {
    if (!this.closed) this.#queue(u32Frame(FrameType.RstStream, s.id, code));
  }

  #closeIfIdle(): void {
    if (this.draining && this.#streams.size === 0 && this.#waiting.length === 0) {
      this.close();
    }
  }

  /** Fails every call (outcome unknown to the caller) and closes the socket. */
  #fail(reason: string): void {
    if (this.closed) return;
    this.draining = true;
    for (const s of this.#streams.values()) {
      this.#finish(s, ChannelStatus.Unavailable, reason, undefined, true);
    }
    for (const c of this.#takeWaiting()) c.resolve(unavailable(reason));
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.draining = true;
    for (const s of this.#streams.values()) {
      this.#finish(s, ChannelStatus.Cancelled, "the channel was closed", undefined, true);
    }
    for (const c of this.#takeWaiting()) c.resolve(cancelled());
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    this.onClosed();
  }
}

function unavailable(details: string): UnaryResult {
  return { code: ChannelStatus.Unavailable, details, metadata: new Map() };
}

function cancelled(): UnaryResult {
  return { code: ChannelStatus.Cancelled, details: "cancelled", metadata: new Map() };
}

function concat(parts: Uint8Array[]): Uint8Array {
  return parts.length === 1 ? parts[0] : concatBytes(...parts);
}

/** grpc-message is percent-encoded (gRPC over HTTP/2 spec); a malformed one is kept as is. */
function decodeGrpcMessage(s: string): string {
  if (!s.includes("%")) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * Unary gRPC calls to one `host:port`, over one HTTP/2 connection at a time
 * (a new one after a failure or GOAWAY; calls never wait for a reconnect
 * backoff: a refused connection fails the call at once as unavailable, and
 * the caller's retry policy decides).
 */
export class H2Channel {
  #current: H2ClientConnection | undefined;
  #connecting: Promise<H2ClientConnection> | undefined;
  #closed = false;
  readonly #host: string;
  readonly #port: number;

  constructor(readonly endpoint: string) {
    ({ host: this.#host, port: this.#port } = splitHostPort(endpoint));
  }

  /**
   * Calls `path` (`/package.Service/Method`) with an encoded request and
   * resolves (never rejects) with the outcome. `signal` cancels the call.
   */
  unary(
    path: string,
    message: Uint8Array,
    deadlineMs: number,
    signal?: AbortSignal,
  ): Promise<UnaryResult> {
    if (this.#closed) return Promise.resolve(cancelled());
    if (signal?.aborted) return Promise.resolve(cancelled());
    return new Promise<UnaryResult>((resolve) => {
      let conn: H2ClientConnection | undefined;
      let done = false;
      let connectTimer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => conn ? conn.cancel(finish) : finish(cancelled());
      const finish = (r: UnaryResult) => {
        if (done) return;
        done = true;
        if (connectTimer !== undefined) clearTimeout(connectTimer);
        signal?.removeEventListener("abort", onAbort);
        resolve(r);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      const start = (c: H2ClientConnection) => {
        if (done) return;
        if (connectTimer !== undefined) clearTimeout(connectTimer);
        conn = c;
        c.call({ path, message, deadlineMs, resolve: finish });
      };
      const live = this.#current;
      if (live && !live.draining) {
        start(live);
        return;
      }
      // The deadline also covers connecting (a blackholed address never answers the SYN).
      connectTimer = setTimeout(() => {
        connectTimer = undefined;
        finish({
          code: ChannelStatus.DeadlineExceeded,
          details: `Deadline exceeded while connecting to ${this.endpoint}`,
          metadata: new Map(),
        });
      }, Math.max(1, deadlineMs - Date.now()));
      this.#connect().then(
        start,
        (e) => finish(unavailable(`cannot connect to ${this.endpoint}: ${(e as Error).message}`)),
      );
    });
  }

  #connect(): Promise<H2ClientConnection> {
    this.#connecting ??= (async () => {
      try {
        const conn = await Deno.connect({ hostname: this.#host, port: this.#port });
        conn.setNoDelay(true);
        if (this.#closed) {
          conn.close();
          throw new Error("the channel was closed");
        }
        const c: H2ClientConnection = new H2ClientConnection(conn, this.endpoint, () => {
          if (this.#current === c) this.#current = undefined;
        });
        this.#current = c;
        return c;
      } finally {
        this.#connecting = undefined;
      }
    })();
    return this.#connecting;
  }

  /** Closes the connection; calls still open end as cancelled. */
  close(): void {
    this.#closed = true;
    this.#current?.close();
    this.#current = undefined;
  }
}
