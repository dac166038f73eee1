/**
 * gRPC over our HTTP/2 server connection (the gRPC-over-HTTP/2 protocol):
 * routes `:path` to a method, frames messages (u8 compressed · u32 length ·
 * bytes), honours `grpc-timeout`, and ends every call with `grpc-status`,
 * `grpc-message` and our error metadata in the trailers. Handlers get
 * decoded requests and return plain objects; encoding uses the same
 * proto-loader definitions as the clients, so both sides see one shape.
 *
 * @module
 */

import type { H2Stream, StreamAbort } from "./connection.ts";
import { type DeadlineEntry, DeadlineQueue } from "../../common/deadline_queue.ts";
import { SystemClock } from "../../common/clock.ts";
import type { HeaderField } from "./hpack.ts";
import { allocBytes } from "../../common/byte_pool.ts";
import { writeU32 } from "../../common/bytes.ts";
import { PartialUnit } from "../../common/partial_unit.ts";

// deno-lint-ignore no-explicit-any
type Msg = any;

/** gRPC status codes used here (the full list is in the gRPC spec). */
export const GrpcStatus = {
  Ok: 0,
  Cancelled: 1,
  Unknown: 2,
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  ResourceExhausted: 8,
  Unimplemented: 12,
  Internal: 13,
  Unavailable: 14,
} as const;

/** A call's end: status, message and trailing metadata. */
export interface GrpcOutcome {
  code: number;
  details: string;
  metadata?: Record<string, string>;
}

/** Maps a thrown value to the call's status (lib/server/status.ts provides it). */
export type ErrorMapper = (e: unknown) => GrpcOutcome;

/** What every handler sees of its call. */
export class GrpcCall {
  #cancelHooks: (() => void)[] = [];
  /** True once the client went away, reset the call, or its deadline passed. */
  cancelled = false;

  constructor(
    /** Request headers (lowercase names; the HTTP/2 pseudo-headers are there too). */
    readonly metadata: Map<string, string>,
    /** Absolute deadline (Date.now() milliseconds), if the client set one. */
    readonly deadline: number | undefined,
  ) {}

  /**
   * Trailing metadata a handler adds to a successful reply (rare: the reply
   * then leaves the precomputed fast path).
   */
  trailers: Record<string, string> | undefined;

  /** Milliseconds left before the deadline (undefined when there is none). */
  remainingMs(): number | undefined {
    return this.deadline === undefined ? undefined : Math.max(1, this.deadline - Date.now());
  }

  /** Runs `hook` once when the call is cancelled. */
  onCancel(hook: () => void): void {
    if (this.cancelled) hook();
    else this.#cancelHooks.push(hook);
  }

  /** @internal */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    for (const hook of this.#cancelHooks.splice(0)) hook();
  }
}

/** The response side of a server-streaming call. */
export interface ServerStream {
  readonly call: GrpcCall;
  /** Sends one message; false when the client is not keeping up (wait for `drained`). */
  write(message: Msg): boolean;
  /** Resolves when queued bytes fall below the high-water mark, or the call ends. */
  drained(): Promise<void>;
  /** Ends the call with OK. */
  end(): void;
  /** Ends the call with the status of `error`. */
  fail(error: unknown): void;
}

/** How one method is served. */
export type GrpcMethod =
  | { kind: "unary"; handle: (request: Msg, call: GrpcCall) => Promise<Msg> }
  | { kind: "serverStream"; handle: (request: Msg, stream: ServerStream) => void }
  | {
    kind: "clientStream";
    handle: (requests: AsyncIterable<Msg>, call: GrpcCall) => Promise<Msg>;
  };

/** Encoding of one method's messages (proto-loader's serializers, or lib/server/kv_codec.ts). */
export interface MethodCodec {
  decode(bytes: Uint8Array): Msg;
  /** The result is copied into a frame at once, so it may be a view of a reused buffer. */
  encode(message: Msg): Uint8Array;
}

/**
 * The response headers and the trailers of a successful call: the same
 * frozen arrays every time, so the connection's HPACK encoder can reuse
 * their encoding (see HpackEncoder.encode).
 */
const okResponseHeaders: readonly HeaderField[] = Object.freeze([
  Object.freeze([":status", "200"]) as HeaderField,
  Object.freeze(["content-type", "application/grpc"]) as HeaderField,
]);
const okTrailers: readonly HeaderField[] = Object.freeze([
  Object.freeze(["grpc-status", "0"]) as HeaderField,
]);

/** Bytes queued on a stream beyond which a streaming write reports backpressure. */
const highWaterBytes = 1 << 20;

/**
 * A message with gRPC's 5-byte prefix (u8 0 = not compressed, u32 length),
 * as both sides put it in DATA frames; pooled, since it is framed and sent.
 */
export function frameGrpcMessage(body: Uint8Array): Uint8Array {
  const framed = allocBytes(5 + body.length);
  writeU32(framed, 1, body.length);
  framed.set(body, 5);
  return framed;
}

/** Routes HTTP/2 streams to gRPC methods by path ("/package.Service/Method"). */
export class GrpcRouter {
  readonly #routes = new Map<string, { method: GrpcMethod; codec: MethodCodec }>();
  /** Deadlines of the calls in flight on every connection, behind one timer. */
  readonly deadlines = new DeadlineQueue(new SystemClock());

  constructor(
    private readonly maxMessageBytes: number,
    private readonly toOutcome: ErrorMapper,
  ) {}

  /** Registers `method` at `path`. */
  add(path: string, codec: MethodCodec, method: GrpcMethod): void {
    this.#routes.set(path, { method, codec });
  }

  /** Serves one stream. */
  serve(stream: H2Stream): void {
    new GrpcExchange(stream, this.#routes.get(stream.headers.get(":path") ?? ""), this).start();
  }

  /** @internal */
  get limits(): { maxMessageBytes: number; toOutcome: ErrorMapper } {
    return { maxMessageBytes: this.maxMessageBytes, toOutcome: this.toOutcome };
  }
}

const timeoutUnits: Record<string, number> = {
  H: 3_600_000,
  M: 60_000,
  S: 1_000,
  m: 1,
  u: 0.001,
  n: 0.000001,
};

/** Parses `grpc-timeout` ("100m", "5S"; at most 8 digits and a unit). */
export function parseGrpcTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!m) return undefined;
  return Number(m[1]) * timeoutUnits[m[2]];
}

/**
 * Percent-encodes a grpc-message value: bytes outside 0x20..0x7e, '%', and a
 * space at either end (HTTP/2 field values may not start or end with
 * whitespace; a client's HTTP/2 stack drops such a header).
 */
export function encodeGrpcMessage(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let out = "";
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    const edgeSpace = b === 0x20 && (i === 0 || i === bytes.length - 1);
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 && !edgeSpace
      ? String.fromCharCode(b)
      : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** One call on one stream: request framing in, response framing out. */
class GrpcExchange {
  readonly #call: GrpcCall;
  /** A request message that the last DATA frame ended inside. */
  readonly #partial = new PartialUnit();
  /**
   * Request messages received and not yet taken: the first in a field, any
   * later ones (client streams) in an array made for them. A unary call thus
   * allocates no array: V8 pretenured the `[]` this used to be (allocated
   * every call's array in the old generation, see kv_codec.ts), which kept
   * each request alive until a full collection.
   */
  #head: Msg | undefined;
  #queued = 0;
  #rest: Msg[] | undefined;
  /** Request messages received in all. */
  #received = 0;
  /** Request bytes received and not yet credited back (client streams, see H2Stream.manualCredit). */
  #uncredited = 0;
  #wake: (() => void) | undefined;
  #requestEnded = false;
  #headersSent = false;
  #done = false;
  #deadline: DeadlineEntry | undefined;
  /** Server-streaming writers waiting for the stream to drain; created when one waits. */
  #drainWaiters: (() => void)[] | undefined;

  constructor(
    private readonly stream: H2Stream,
    private readonly route: { method: GrpcMethod; codec: MethodCodec } | undefined,
    private readonly router: GrpcRouter,
  ) {
    // The request headers serve as the call's metadata as they are: no copy per call.
    const timeout = parseGrpcTimeout(stream.headers.get("grpc-timeout"));
    this.#call = new GrpcCall(
      stream.headers,
      timeout === undefined ? undefined : Date.now() + timeout,
    );
  }

  start(): void {
    const s = this.stream;
    s.onAbort = (_why: StreamAbort) => {
      this.#done = true;
      this.#cleanup();
      this.#call.cancel();
      this.#wakeReader();
    };
    s.onDrain = () => {
      if (s.queuedBytes < highWaterBytes) this.#releaseDrainWaiters();
    };
    if (s.headers.get(":method") !== "POST") {
      return this.#finish({ code: GrpcStatus.Unimplemented, details: "gRPC calls use POST" });
    }
    const type = s.headers.get("content-type") ?? "";
    if (!type.startsWith("application/grpc")) {
      return this.#finish({
        code: GrpcStatus.Unknown,
        details: `content-type ${JSON.stringify(type)} is not application/grpc`,
      });
    }
    if (!this.route) {
      return this.#finish({
        code: GrpcStatus.Unimplemented,
        details: `unknown method ${s.headers.get(":path")}`,
      });
    }
    const timeout = this.#call.remainingMs();
    if (timeout !== undefined) {
      this.#deadline = this.router.deadlines.add(this.router.deadlines.now() + timeout, () => {
        this.#deadline = undefined;
        this.#finish({ code: GrpcStatus.DeadlineExceeded, details: "deadline exceeded" });
        this.#call.cancel();
      });
    }
    // A client stream's window is given back as its messages are taken.
    s.manualCredit = this.route.method.kind === "clientStream";
    s.onData = (chunk) => this.#receive(chunk);
    s.onEnd = () => {
      this.#requestEnded = true;
      this.#wakeReader();
    };
    this.#run(this.route.method).catch((e) => this.#finish(this.router.limits.toOutcome(e)));
  }

  async #run(method: GrpcMethod): Promise<void> {
    if (method.kind === "clientStream") {
      const response = await method.handle(this.#requests(), this.#call);
      this.#reply(response);
      return;
    }
    const request = await this.#single();
    if (request === undefined) return;
    if (method.kind === "unary") {
      const response = await method.handle(request, this.#call);
      this.#reply(response);
      return;
    }
    method.handle(request, this.#serverStream());
  }

  #serverStream(): ServerStream {
    return {
      call: this.#call,
      write: (message) => {
        if (this.#done) return false;
        this.#sendMessage(message);
        return this.stream.queuedBytes < highWaterBytes;
      },
      drained: () =>
        this.#done || this.stream.queuedBytes < highWaterBytes
          ? Promise.resolve()
          : new Promise<void>((resolve) => (this.#drainWaiters ??= []).push(resolve)),
      end: () => this.#finish({ code: GrpcStatus.Ok, details: "" }),
      fail: (e) => this.#finish(this.router.limits.toOutcome(e)),
    };
  }

  #reply(response: Msg): void {
    if (this.#done) return;
    this.#sendMessage(response);
    this.#finish({ code: GrpcStatus.Ok, details: "", metadata: this.#call.trailers });
  }

  #sendMessage(message: Msg): void {
    const body = this.route!.codec.encode(message);
    const framed = frameGrpcMessage(body);
    if (!this.#headersSent) {
      this.#headersSent = true;
      this.stream.respond(okResponseHeaders);
    }
    this.stream.write(framed);
  }

  /** Waits for exactly one request message and the end of the request. */
  async #single(): Promise<Msg | undefined> {
    while (!this.#requestEnded && !this.#done) await this.#waitForInput();
    if (this.#done) return undefined;
    if (this.#received !== 1) {
      this.#finish({
        code: GrpcStatus.Unimplemented,
        details: `expected one request message, got ${this.#received}`,
      });
      return undefined;
    }
    return this.#take();
  }

  async *#requests(): AsyncIterable<Msg> {
    for (;;) {
      if (this.#queued > 0) {
        yield this.#take();
        continue;
      }
      if (this.#requestEnded || this.#done) return;
      await this.#waitForInput();
    }
  }

  /** The oldest message not yet taken (the caller checked there is one). */
  #take(): Msg {
    const message = this.#head;
    this.#queued--;
    this.#head = this.#queued > 0 ? this.#rest!.shift() : undefined;
    if (this.#queued === 0) this.#creditTaken();
    return message;
  }

  /**
   * With nothing left to take, gives back the window of everything received
   * so far: a handler that has taken all it got is never the one holding
   * the client back (and a message larger than the window can complete).
   */
  #creditTaken(): void {
    if (!this.stream.manualCredit || this.#uncredited === 0 || this.#done) return;
    this.stream.credit(this.#uncredited);
    this.#uncredited = 0;
  }

  #waitForInput(): Promise<void> {
    return new Promise<void>((resolve) => (this.#wake = resolve));
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #receive(chunk: Uint8Array): void {
    if (this.#done) return;
    this.#uncredited += chunk.length;
    const partial = this.#partial;
    let pos = 0;
    while (partial.pending && pos < chunk.length) {
      pos = partial.fill(chunk, pos);
      if (!partial.full) break;
      const size = this.#messageSize(partial.bytes, 0);
      if (size < 0) return;
      if (size > partial.bytes.length) {
        partial.grow(size);
        continue;
      }
      if (!this.#decode(partial.take().subarray(5, size))) return;
    }
    while (!partial.pending) {
      const avail = chunk.length - pos;
      if (avail < 5) {
        // The frame's bytes are not ours after this callback: `hold` copies them.
        if (avail > 0) partial.hold(chunk, pos, 5);
        break;
      }
      const size = this.#messageSize(chunk, pos);
      if (size < 0) return;
      if (avail < size) {
        partial.hold(chunk, pos, size);
        break;
      }
      if (!this.#decode(chunk.subarray(pos + 5, pos + size))) return;
      pos += size;
    }
    if (this.#queued === 0) this.#creditTaken(); // only part of a message so far
    this.#wakeReader();
  }

  /**
   * Bytes of the message whose 5-byte prefix is at `at` of `b`, or -1 after
   * finishing the call (a compressed or oversized message).
   */
  #messageSize(b: Uint8Array, at: number): number {
    const length = ((b[at + 1] << 24) | (b[at + 2] << 16) | (b[at + 3] << 8) | b[at + 4]) >>> 0;
    if (b[at] !== 0) {
      this.#finish({
        code: GrpcStatus.Unimplemented,
        details: "compressed messages are not supported (use identity encoding)",
      });
      return -1;
    }
    const max = this.router.limits.maxMessageBytes;
    if (length > max) {
      this.#finish({
        code: GrpcStatus.ResourceExhausted,
        details: `received message larger than max (${length} vs. ${max})`,
      });
      return -1;
    }
    return 5 + length;
  }

  /** Decodes one request message; false after finishing the call when it does not parse. */
  #decode(body: Uint8Array): boolean {
    if (this.#received >= 1 && this.route!.method.kind !== "clientStream") {
      // A call that takes one message: a second ends it now, before any more are queued.
      this.#finish({
        code: GrpcStatus.Unimplemented,
        details: `expected one request message, got ${this.#received + 1}`,
      });
      return false;
    }
    let message: Msg;
    try {
      message = this.route!.codec.decode(body);
    } catch (e) {
      this.#finish({
        code: GrpcStatus.Internal,
        details: `request message does not parse: ${(e as Error).message}`,
      });
      return false;
    }
    this.#received++;
    if (this.#queued++ === 0) this.#head = message;
    else (this.#rest ??= []).push(message);
    return true;
  }

  #finish(outcome: GrpcOutcome): void {
    if (this.#done) return;
    this.#done = true;
    this.#cleanup();
    if (
      this.#headersSent && outcome.code === GrpcStatus.Ok && !outcome.details &&
      outcome.metadata === undefined
    ) {
      this.stream.finish(okTrailers);
      this.#wakeReader();
      return;
    }
    const trailers: HeaderField[] = [];
    if (!this.#headersSent) {
      trailers.push([":status", "200"], ["content-type", "application/grpc"]);
    }
    trailers.push(["grpc-status", String(outcome.code)]);
    if (outcome.details) trailers.push(["grpc-message", encodeGrpcMessage(outcome.details)]);
    for (const [k, v] of Object.entries(outcome.metadata ?? {})) trailers.push([k, v]);
    if (outcome.code !== GrpcStatus.Ok) this.#call.cancel();
    this.stream.finish(trailers);
    this.#wakeReader();
  }

  #cleanup(): void {
    if (this.#deadline !== undefined) this.router.deadlines.remove(this.#deadline);
    this.#deadline = undefined;
    this.#releaseDrainWaiters();
  }

  #releaseDrainWaiters(): void {
    const waiters = this.#drainWaiters;
    if (waiters === undefined || waiters.length === 0) return;
    this.#drainWaiters = undefined;
    for (const w of waiters) w();
  }
}
