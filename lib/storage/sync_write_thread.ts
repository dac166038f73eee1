/**
 * A helper thread that makes an append durable with one positional write to
 * a file it opened with O_DSYNC. Through Deno's async file API a durable
 * append is two trips through the runtime's blocking thread pool (a write,
 * then an fdatasync), and on a mostly idle 2-core VM each trip's two thread
 * wake-ups cost tens of microseconds; this thread needs one trip. Measured
 * with `deno task bench storage` (64 writers, 64-byte values): see the
 * README's storage table.
 *
 * The main thread and the helper share two buffers: a control block and a
 * data buffer the bytes are copied into. The helper sleeps in Atomics.wait;
 * the caller fills the buffers, bumps the request number and notifies; the
 * helper writes, stores the outcome, bumps the done number and notifies; the
 * caller waits for that with Atomics.waitAsync, so the event loop never
 * blocks. One request runs at a time (a queue orders them). The helper is
 * a node:worker_threads Worker that is unref'd while no request is in
 * flight, so an idle helper never keeps a process alive.
 *
 * The helper's code is the function `helperMain`, serialized into a data:
 * URL, so the thread needs no module file of its own (nothing extra to embed
 * in a compiled binary, no read permission on the source tree).
 *
 * @module
 */

import { Worker } from "node:worker_threads";
import type * as NodeFs from "node:fs";

/** How long the first request waits for the thread to start. */
const startTimeoutMs = 10_000;

/** Bytes of the data buffer: a larger append takes the write + fdatasync path instead. */
export const syncWriteMaxBytes = 4 << 20;

/** Int32 slots of the control block. */
const enum Ctl {
  /** Request number, bumped by the caller. */
  Request = 0,
  /** Number of the last request done, bumped by the helper. */
  Done = 1,
  Op = 2,
  Slot = 3,
  Length = 4,
  /** 0: done; 1: failed, with "code\nmessage" (UTF-8) in the data buffer, `Length` bytes. */
  Status = 5,
}
/** Byte offset of the Float64 file offset of a write in the control block. */
const offsetAt = 32;
/** Byte offset of the Float64 inode and device numbers an Open reports. */
const identityAt = 40;
const controlBytes = 64;

/** Requests the helper serves. */
const enum Op {
  /** Open the file whose UTF-8 path is in the data buffer, as `Slot`. */
  Open = 1,
  /** Write `Length` bytes of the data buffer at the offset, to `Slot`'s file. */
  Write = 2,
  Close = 3,
}

/**
 * The helper thread's whole program (serialized with toString: it may use
 * nothing from this module's scope). Numbers are the Ctl and Op values.
 */
function helperMain(control: SharedArrayBuffer, data: SharedArrayBuffer, fs: typeof NodeFs) {
  const ctl = new Int32Array(control);
  const offset = new Float64Array(control, 32, 1);
  const identity = new Float64Array(control, 40, 2);
  const bytes = new Uint8Array(data);
  const files = new Map<number, number>();
  let seen = 0;
  for (;;) {
    if (Atomics.wait(ctl, 0, seen) === "ok" && Atomics.load(ctl, 0) === seen) {
      // Woken without a request: one is on its way (SyncWriteThread.expectWrite). Waiting
      // for it awake saves the thread wake-up it would otherwise pay; the wait is bounded.
      const until = performance.now() + 0.25;
      while (Atomics.load(ctl, 0) === seen && performance.now() < until);
      if (Atomics.load(ctl, 0) === seen) continue;
    }
    seen = Atomics.load(ctl, 0);
    const op = ctl[2], slot = ctl[3], length = ctl[4];
    let failure: string | undefined;
    try {
      if (op === 1) {
        const path = new TextDecoder().decode(bytes.subarray(0, length));
        const fd = fs.openSync(path, fs.constants.O_WRONLY | fs.constants.O_DSYNC);
        try {
          const stat = fs.fstatSync(fd);
          identity[0] = Number(stat.ino);
          identity[1] = Number(stat.dev);
        } catch (e) {
          fs.closeSync(fd);
          throw e;
        }
        files.set(slot, fd);
      } else if (op === 2) {
        const fd = files.get(slot);
        if (fd === undefined) throw new Error(`no open file in slot ${slot}`);
        let done = 0;
        for (let i = 0; done < length && i < 1_000_000; i++) {
          done += fs.writeSync(fd, bytes, done, length - done, offset[0] + done);
        }
        if (done < length) throw new Error(`short write: ${done} of ${length} bytes`);
      } else if (op === 3) {
        const fd = files.get(slot);
        files.delete(slot);
        if (fd !== undefined) fs.closeSync(fd);
      }
    } catch (e) {
      const code = (e as { code?: string }).code ?? "";
      failure = `${code}\n${e instanceof Error ? e.message : String(e)}`;
    }
    if (failure === undefined) ctl[5] = 0;
    else {
      const encoded = new TextEncoder().encode(failure).subarray(0, 4096);
      bytes.set(encoded, 0);
      ctl[4] = encoded.length;
      ctl[5] = 1;
    }
    Atomics.store(ctl, 1, seen);
    Atomics.notify(ctl, 1);
  }
}

/**
 * Waits until `ctl[index]` is `wanted`, or `stopped()` (checked after each
 * wake-up: whoever stops the wait sets it and notifies `index`); false when
 * it stopped first. A wake-up alone proves nothing: the helper stores a done
 * number before it notifies, so a caller that read the number before that
 * notify ran can be woken by it while it already waits for its next request.
 * (A node stopped with a "lost request" in the chaos suite when a wake-up
 * was taken as the answer.) Nothing is attached to long-lived promises: a
 * reaction per request on one that never settles leaked about 500 bytes a
 * request.
 */
export async function waitForValue(
  ctl: Int32Array,
  index: number,
  wanted: number,
  stopped: () => boolean,
): Promise<boolean> {
  for (let i = 0; i < 1_000_000; i++) {
    const seen = Atomics.load(ctl, index);
    if (seen === wanted) return true;
    if (stopped()) return false;
    const waited = Atomics.waitAsync(ctl, index, seen);
    if (waited.async) await waited.value;
  }
  return Atomics.load(ctl, index) === wanted;
}

/**
 * The thread could not take the request (it died, or never started), so
 * nothing of it was written: the caller may make it durable another way.
 */
export class SyncWriteUnavailableError extends Error {
  constructor(readonly reason: Error) {
    super(`the durable-write thread is unavailable: ${reason.message}`, { cause: reason });
    this.name = "SyncWriteUnavailableError";
  }
}

/** An error the helper reported, with the failed call's `code` (ENOSPC, EIO, ...). */
export class SyncWriteError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = "SyncWriteError";
  }
}

/** The helper thread and its request queue; see the module doc. */
export class SyncWriteThread {
  readonly #worker: Worker;
  readonly #ctl: Int32Array;
  readonly #offset: Float64Array;
  readonly #data: Uint8Array;
  #request = 0;
  #nextSlot = 0;
  /** Writes done (for tests and stats). */
  writeCount = 0;
  #queue: Promise<unknown> = Promise.resolve();
  /** Requests queued or running. */
  #queued = 0;
  /** Set when the helper died: every later request fails with it. */
  #dead: Error | undefined;
  /** Settles when the helper says it runs (or died first). */
  readonly #ready: Promise<void>;
  #isStarted = false;
  readonly #isDead = () => this.#dead !== undefined;

  private constructor() {
    const control = new SharedArrayBuffer(controlBytes);
    const data = new SharedArrayBuffer(syncWriteMaxBytes);
    this.#ctl = new Int32Array(control);
    this.#offset = new Float64Array(control, offsetAt, 1);
    this.#data = new Uint8Array(data);
    const source = `import { parentPort, workerData } from "node:worker_threads";\n` +
      `import * as fs from "node:fs";\n` +
      `parentPort.postMessage("ready");\n` +
      `(${helperMain.toString()})(workerData.control, workerData.data, fs);\n`;
    this.#worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(source)}`), {
      workerData: { control, data },
    });
    this.#worker.unref();
    let ready!: () => void;
    this.#ready = new Promise((resolve) => (ready = resolve));
    this.#worker.once("message", () => ready());
    const die = (why: string) => {
      this.#dead ??= new Error(`the durable-write thread stopped: ${why}`);
      Atomics.notify(this.#ctl, Ctl.Done); // a waiting caller sees #dead
      ready();
    };
    this.#worker.on("error", (e: Error) => die(e.message));
    this.#worker.on("exit", (code: number) => die(`exit code ${code}`));
  }

  /**
   * Waits (boundedly) for the thread to start: a thread that cannot start
   * fails the first request (an open, which its caller answers by falling
   * back to write + fdatasync) instead of hanging it.
   */
  async #started(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.#dead ??= new Error(`the durable-write thread did not start in ${startTimeoutMs} ms`);
        this.#worker.terminate().catch(() => {});
        resolve();
      }, startTimeoutMs);
    });
    try {
      await Promise.race([this.#ready, timeout]);
    } finally {
      clearTimeout(timer);
    }
    this.#isStarted = this.#dead === undefined;
  }

  static #shared: SyncWriteThread | undefined;
  static #unavailable = false;

  /** The process's helper thread, started on first use; undefined where threads cannot start. */
  static shared(): SyncWriteThread | undefined {
    const current = SyncWriteThread.#shared;
    if (current !== undefined && current.#dead !== undefined) {
      // A dead thread serves nobody: new callers fall back from now on.
      SyncWriteThread.#shared = undefined;
      SyncWriteThread.#unavailable = true;
    }
    if (SyncWriteThread.#shared === undefined && !SyncWriteThread.#unavailable) {
      try {
        SyncWriteThread.#shared = new SyncWriteThread();
      } catch {
        SyncWriteThread.#unavailable = true;
      }
    }
    return SyncWriteThread.#shared;
  }

  /**
   * A hint that a write follows within microseconds (its caller is encoding
   * it): the thread wakes now and waits for it awake (for at most 250 µs),
   * so the write does not wait for a thread wake-up, which costs tens of
   * microseconds on an idle VM core. Ignored while requests are queued (the
   * thread is awake anyway).
   */
  expectWrite(): void {
    if (this.#queued === 0 && this.#dead === undefined) Atomics.notify(this.#ctl, Ctl.Request);
  }

  /**
   * Opens `path` (which must exist) for durable writes; resolves with its
   * slot and the inode and device numbers of the file it opened, so the
   * caller can check it is the file it meant.
   */
  async open(path: string): Promise<{ slot: number; ino: number; dev: number }> {
    const slot = ++this.#nextSlot;
    await this.#enqueue(Op.Open, slot, 0, new TextEncoder().encode(path));
    const identity = new Float64Array(this.#ctl.buffer, identityAt, 2);
    return { slot, ino: identity[0], dev: identity[1] };
  }

  /** Writes `bytes` at `offset` of `slot`'s file; resolves once they are durable. */
  write(slot: number, offset: number, bytes: Uint8Array): Promise<void> {
    if (bytes.length > syncWriteMaxBytes) {
      return Promise.reject(new RangeError(`${bytes.length} bytes exceed ${syncWriteMaxBytes}`));
    }
    return this.#enqueue(Op.Write, slot, offset, bytes).then(this.#counted);
  }

  readonly #counted = () => {
    this.writeCount++;
  };

  /** Closes `slot`'s file. */
  close(slot: number): Promise<void> {
    return this.#enqueue(Op.Close, slot, 0, new Uint8Array(0));
  }

  /**
   * Runs the request after those queued before it; with none queued it
   * starts at once, within this call: a caller's work right after `write`
   * then overlaps the I/O.
   */
  #enqueue(op: Op, slot: number, offset: number, bytes: Uint8Array): Promise<void> {
    const run = this.#queued === 0
      ? this.#call(op, slot, offset, bytes)
      : this.#queue.then(() => this.#call(op, slot, offset, bytes));
    this.#queued++;
    this.#queue = run.then(this.#settled, this.#settled);
    return run;
  }

  readonly #settled = () => {
    this.#queued--;
  };

  async #call(op: Op, slot: number, offset: number, bytes: Uint8Array): Promise<void> {
    if (!this.#isStarted && this.#dead === undefined) {
      this.#worker.ref();
      try {
        await this.#started();
      } finally {
        this.#worker.unref();
      }
    }
    if (this.#dead) throw new SyncWriteUnavailableError(this.#dead);
    const ctl = this.#ctl;
    this.#data.set(bytes, 0);
    ctl[Ctl.Op] = op;
    ctl[Ctl.Slot] = slot;
    ctl[Ctl.Length] = bytes.length;
    this.#offset[0] = offset;
    // The numbers live in an Int32Array: they wrap (only equality matters).
    const request = this.#request = (this.#request + 1) | 0;
    // A request in flight keeps the process alive until its outcome is known.
    this.#worker.ref();
    try {
      Atomics.store(ctl, Ctl.Request, request);
      Atomics.notify(ctl, Ctl.Request);
      await waitForValue(ctl, Ctl.Done, request, this.#isDead);
    } finally {
      this.#worker.unref();
    }
    if (Atomics.load(ctl, Ctl.Done) !== request) throw this.#dead ?? new Error("lost request");
    if (ctl[Ctl.Status] !== 0) {
      const text = new TextDecoder().decode(this.#data.subarray(0, ctl[Ctl.Length]));
      const cut = text.indexOf("\n");
      throw new SyncWriteError(text.slice(0, cut), text.slice(cut + 1));
    }
  }
}
