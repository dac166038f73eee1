/**
 * The write-ahead-log segment writer. It appends buffers of already-framed
 * records (one buffer per group commit) and syncs them; the group-commit
 * queue that fills those buffers lives in the engine, next to the memtable it
 * must stay in step with. On a failed append it cuts the file back to the
 * last good record so later records never follow garbage.
 *
 * Buffered appends (`appendBuffered`, for writes that need not be durable)
 * stay in memory until the next write-through append, `writePending`, `sync`
 * or `close`, which write them first, in order, in the same file write: a
 * reader of the file never sees a later record without an earlier one. A
 * failed write of buffered records breaks the writer (they were already
 * acknowledged, so they cannot simply be cut off).
 *
 * Durable appends (`appendDurable`) are a write and an fsync that runs
 * beside later writes. With `preallocateBytes` above 0 the writer keeps
 * that much zero-filled space ahead of its appends (filled in the
 * background), so a durable append overwrites zeros and its sync writes data
 * only; such a segment starts with a durable sync marker and every write
 * begins with one (lib/storage/record_log.ts), so recovery can tell a torn
 * write from damaged durable data. `seal` cuts the unused zeros off.
 *
 * With `bytesPerSync` above 0, an fsync starts in the background whenever
 * that many written bytes are not yet synced, beside later writes. Without
 * it, a run of unsynced writes leaves the whole run dirty in the page cache
 * and the next `sync` (a rotation, a barrier) must write all of it at once:
 * tens of megabytes, hundreds of milliseconds of stalled writes, and every
 * other fsync on the disk (a Raft log's) queued behind it.
 *
 * @module
 */

import { concatBytes } from "../common/bytes.ts";
import { IoError } from "../common/errors.ts";
import type { FileHandle } from "./fs.ts";
import { frameSyncMarker, syncMarkerBytes } from "./record_log.ts";

/** Options of a WalWriter. */
export interface WalWriterOptions {
  /** Unsynced written bytes that start a background fsync (0: never). */
  bytesPerSync?: number;
  /**
   * Zero-filled bytes to keep ahead of the appends (0: none). Needs a new
   * segment (size 0) or one that already has markers (`markers`).
   */
  preallocateBytes?: number;
  /** The segment being continued already starts with a sync marker. */
  markers?: boolean;
}

/** Work a durable append may run beside its I/O (WalWriter.appendDurable). */
export interface DurableAppendHooks {
  /**
   * Runs once the bytes are durable (a one-step append: when its write
   * returns; otherwise when the fsync after the write is done), a little
   * before the append's promise resolves. A leader applies entries from here,
   * and the state it applies to may make its applied index durable at any
   * time: were the entries only in the page cache, a power loss would leave
   * that state ahead of the log.
   */
  onWritten?: () => void;
  /**
   * Runs once the write has started, maybe before its bytes are in the file,
   * so its work overlaps the I/O. Its effects must stay unseen until the
   * append resolves, and stay unseen for good when it fails: a failure that
   * runs this hook leaves the writer broken, never reused. So does a hook
   * that throws (on either hook): its work may be half done.
   */
  whileWriting?: () => void;
}

/** Appends group-commit buffers to one WAL segment. */
export class WalWriter {
  #file: FileHandle;
  /** Bytes appended, buffered ones included. */
  #sizeBytes: number;
  /** Bytes in the file (the size minus what is buffered). */
  #writtenBytes: number;
  #syncedBytes: number;
  #pending: Uint8Array[] = [];
  /** Serializes file writes, so two never overlap and they land in call order. */
  #writeChain: Promise<void> = Promise.resolve();
  #pendingBytes = 0;
  #pendingRecords = 0;
  /** Unsynced written bytes that start a background fsync (0: never). */
  #bytesPerSync: number;
  /** The background fsync in flight, if any (it never rejects: a failure breaks the writer). */
  #backgroundSync: Promise<void> | undefined;
  /** sync() calls in progress (a background fsync beside one would be redundant). */
  #explicitSyncs = 0;
  /** Set when the segment can no longer be trusted (a failed truncate or fsync). */
  #broken: Error | undefined;
  /** Zero-filled bytes kept ahead of the appends (0: none). */
  #preallocateBytes: number;
  /** End of the space preallocated so far (or being preallocated). */
  #preallocatedEnd: number;
  /** A background preallocation is in flight. */
  #preallocating = false;
  /** Every write starts with a sync marker (see the module doc). */
  #markers: boolean;
  /** Count of fsyncs issued (for stats and the benchmark). */
  syncCount = 0;
  /** Count of records appended. */
  recordCount = 0;

  /**
   * Continues `file` at `sizeBytes`, which the caller must have made durable
   * (a one-step durable append flushes only its own bytes).
   */
  constructor(
    readonly number: number,
    file: FileHandle,
    sizeBytes: number,
    opts?: WalWriterOptions,
  ) {
    this.#file = file;
    this.#bytesPerSync = opts?.bytesPerSync ?? 0;
    this.#sizeBytes = sizeBytes;
    this.#writtenBytes = sizeBytes;
    this.#syncedBytes = sizeBytes;
    const preallocate = opts?.preallocateBytes ?? 0;
    // Writing in place over zeros needs markers, which only a new segment can start with.
    this.#markers = opts?.markers === true || (preallocate > 0 && sizeBytes === 0);
    this.#preallocateBytes = this.#markers ? preallocate : 0;
    this.#preallocatedEnd = sizeBytes;
    if (this.#markers && sizeBytes === 0) {
      // The leading marker is durable before any record: it is how recovery knows the file's rules.
      this.#sizeBytes = this.#writtenBytes = this.#syncedBytes = syncMarkerBytes;
      this.#chained(async () => {
        try {
          await this.#file.append(frameSyncMarker(0));
          await this.#file.syncData();
        } catch (e) {
          this.#broken = e instanceof Error ? e : new IoError(this.path, String(e));
        }
      });
    }
    this.#maybePreallocate();
  }

  /** Keeps `preallocateBytes` of zero-filled space ahead of the appends, filled in the background. */
  #maybePreallocate(): void {
    const chunk = this.#preallocateBytes;
    if (chunk <= 0 || this.#preallocating || this.#broken) return;
    if (this.#preallocatedEnd - this.#sizeBytes >= chunk / 2) return;
    const until = Math.max(this.#preallocatedEnd, this.#sizeBytes) + chunk;
    this.#preallocating = true;
    this.#file.preallocate(until).then(
      () => {
        if (until > this.#preallocatedEnd) this.#preallocatedEnd = until;
      },
      () => {
        // Only an optimization: appends grow the file instead. Retry a chunk later.
        this.#preallocatedEnd = Math.max(this.#preallocatedEnd, this.#sizeBytes + chunk / 2);
      },
    ).finally(() => (this.#preallocating = false));
  }

  /** The parts of a file write of `buf`: a sync marker first when the segment has them. */
  #withMarker(buf: Uint8Array): Uint8Array[] {
    return this.#markers ? [frameSyncMarker(this.#syncedBytes), buf] : [buf];
  }

  /** Bytes appended with `appendBuffered` and not written to the file yet. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Path of the segment. */
  get path(): string {
    return this.#file.path;
  }

  /** Bytes appended so far (buffered ones included). */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  /** Error that made this segment unusable, if any. */
  get broken(): Error | undefined {
    return this.#broken;
  }

  /**
   * Appends `buf` (`records` framed records). On failure, truncates back to
   * the previous end; if even that fails the writer is marked broken.
   */
  append(buf: Uint8Array, records: number): Promise<void> {
    if (this.#broken) return Promise.reject(this.#broken);
    if (this.#pendingBytes > 0) {
      // Buffered records go first, in the same write.
      this.appendBuffered(buf, records);
      return this.writePending();
    }
    return this.#chained(() => this.#appendThrough(buf, records));
  }

  #chained(write: () => Promise<void>): Promise<void> {
    const next = this.#writeChain.then(write);
    this.#writeChain = next.catch(() => {});
    return next;
  }

  async #appendThrough(buf: Uint8Array, records: number): Promise<void> {
    if (this.#broken) throw this.#broken;
    const before = this.#writtenBytes;
    const parts = this.#withMarker(buf);
    const bytes = parts.length === 1 ? buf : concatBytes(...parts);
    try {
      await this.#file.append(bytes);
    } catch (e) {
      await this.#cutBackTo(before);
      throw e;
    }
    this.#writtenBytes = before + bytes.length;
    this.#sizeBytes += bytes.length; // records buffered meanwhile are counted already
    this.recordCount += records;
    this.#maybeSyncInBackground();
    this.#maybePreallocate();
  }

  /** After a failed write: cuts the file back to `before` (preallocated space too), or breaks the writer. */
  async #cutBackTo(before: number): Promise<void> {
    try {
      await this.#file.truncate(before);
      this.#preallocatedEnd = before;
    } catch (t) {
      this.#broken = t instanceof Error ? t : new IoError(this.path, String(t));
    }
  }

  /**
   * Appends `buf` (`records` framed records) and makes everything appended so
   * far durable.
   *
   * Where the file has a one-step durable append (FileHandle.appendDurable)
   * and everything written before is durable, that is one file call. Else a
   * write, then an fsync that does not hold up the next write, so a caller
   * may have several groups in flight, whose fdatasyncs overlap (on this
   * project's test disk two in flight did not finish sooner than one after
   * the other).
   *
   * A failed write of the two-step kind is cut off; a failed fsync, or a
   * failed one-step append (which of its bytes landed is unknown), breaks
   * the writer, as in `sync`. See DurableAppendHooks for the hooks.
   */
  appendDurable(buf: Uint8Array, records: number, hooks?: DurableAppendHooks): Promise<void> {
    if (this.#broken) return Promise.reject(this.#broken);
    if (this.#file.appendDurable !== undefined && this.#pendingBytes === 0) {
      return this.#chained(() => this.#appendDurableNow(buf, records, hooks));
    }
    return this.append(buf, records).then(() => this.#syncWithHooks(hooks));
  }

  /**
   * After a write: starts the fsync covering it, runs whileWriting beside it
   * and onWritten once it is done. A hook that throws breaks the writer (its
   * work may be half done).
   */
  #syncWithHooks(hooks: DurableAppendHooks | undefined): Promise<void> {
    const synced = this.#syncTo(this.#writtenBytes);
    try {
      hooks?.whileWriting?.();
    } catch (e) {
      synced.catch(() => {}); // the caller gets this error; the sync's own, if any, breaks the writer
      throw this.#breakWith(e);
    }
    const onWritten = hooks?.onWritten;
    if (onWritten === undefined) return synced;
    return synced.then(() => {
      try {
        onWritten();
      } catch (e) {
        throw this.#breakWith(e);
      }
    });
  }

  /**
   * A hint that `appendDurable` follows shortly (its caller is encoding the
   * buffer): the file may get ready for it (FileHandle.expectAppendDurable).
   */
  expectAppendDurable(): void {
    if (
      this.#pendingBytes === 0 && this.#broken === undefined &&
      this.#writtenBytes === this.#syncedBytes
    ) this.#file.expectAppendDurable?.();
  }

  /** appendDurable's turn in the write chain, when the file has a one-step durable append. */
  async #appendDurableNow(
    buf: Uint8Array,
    records: number,
    hooks: DurableAppendHooks | undefined,
  ): Promise<void> {
    if (this.#broken) throw this.#broken;
    if (this.#writtenBytes !== this.#syncedBytes) {
      // Written bytes are not durable yet (a background fsync runs): one step would not cover them.
      await this.#appendThrough(buf, records);
      return this.#syncWithHooks(hooks);
    }
    const parts = this.#withMarker(buf);
    const bytes = parts.length === 1 ? buf : concatBytes(...parts);
    const durable = this.#file.appendDurable!(bytes);
    let hookFailure: { error: unknown } | undefined;
    try {
      hooks?.whileWriting?.();
    } catch (e) {
      hookFailure = { error: e };
    }
    try {
      await durable;
    } catch (e) {
      throw this.#breakWith(e);
    }
    this.#writtenBytes += bytes.length;
    this.#syncedBytes = this.#writtenBytes;
    this.#sizeBytes += bytes.length;
    this.recordCount += records;
    this.syncCount++;
    this.#maybePreallocate();
    if (hookFailure !== undefined) throw this.#breakWith(hookFailure.error);
    try {
      hooks?.onWritten?.();
    } catch (e) {
      throw this.#breakWith(e);
    }
  }

  /** Marks the writer broken by `e` (unless it already is) and returns `e`, to throw. */
  #breakWith(e: unknown): unknown {
    this.#broken ??= e instanceof Error ? e : new IoError(this.path, String(e));
    return e;
  }

  /**
   * One fsync covering the first `target` written bytes. A failure breaks the
   * writer: after a failed fsync the page cache state is unknown (fsyncgate).
   */
  async #syncTo(target: number): Promise<void> {
    try {
      await this.#file.syncData();
    } catch (e) {
      this.#broken = e instanceof Error ? e : new IoError(this.path, String(e));
      throw e;
    }
    this.syncCount++;
    // Concurrent syncs may finish out of order: the synced size only grows.
    if (target > this.#syncedBytes) this.#syncedBytes = target;
  }

  /** Starts a background fsync once `bytesPerSync` written bytes are unsynced and none is running. */
  #maybeSyncInBackground(): void {
    if (this.#bytesPerSync <= 0 || this.#backgroundSync !== undefined || this.#broken) return;
    if (this.#explicitSyncs > 0) return;
    if (this.#writtenBytes - this.#syncedBytes < this.#bytesPerSync) return;
    const target = this.#writtenBytes;
    this.#backgroundSync = this.#file.syncData().then(
      () => {
        this.syncCount++;
        if (target > this.#syncedBytes) this.#syncedBytes = target;
      },
      (e) => {
        // As in sync(): after a failed fsync nothing written since the last good one is trusted.
        this.#broken ??= e instanceof Error ? e : new IoError(this.path, String(e));
      },
    ).finally(() => (this.#backgroundSync = undefined));
  }

  /**
   * Appends `buf` (`records` framed records) in memory only: nothing is
   * written until the next `append`, `writePending`, `sync` or `close`.
   */
  appendBuffered(buf: Uint8Array, records: number): void {
    if (this.#broken) throw this.#broken;
    this.#pending.push(buf);
    this.#pendingBytes += buf.length;
    this.#pendingRecords += records;
    this.#sizeBytes += buf.length;
  }

  /**
   * Writes the buffered records to the file (not synced). Writes never
   * overlap: a call made while one is in flight waits for it, then writes
   * what is still buffered.
   */
  writePending(): Promise<void> {
    return this.#chained(() => this.#writePendingNow());
  }

  async #writePendingNow(): Promise<void> {
    if (this.#broken) throw this.#broken;
    if (this.#pendingBytes === 0) return;
    const parts = this.#markers
      ? [frameSyncMarker(this.#syncedBytes), ...this.#pending]
      : this.#pending;
    const bytes = parts.length === 1 ? parts[0] : concatBytes(...parts);
    if (this.#markers) this.#sizeBytes += syncMarkerBytes;
    const records = this.#pendingRecords;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#pendingRecords = 0;
    try {
      await this.#file.append(bytes);
    } catch (e) {
      // Acknowledged (if not durable) records cannot be dropped quietly: stop here.
      this.#broken = e instanceof Error ? e : new IoError(this.path, String(e));
      try {
        await this.#file.truncate(this.#writtenBytes);
      } catch { /* the writer is broken either way */ }
      throw e;
    }
    this.#writtenBytes += bytes.length;
    this.recordCount += records;
    this.#maybeSyncInBackground();
    this.#maybePreallocate();
  }

  /** Makes everything appended so far durable. A failed fsync breaks the writer for good. */
  async sync(): Promise<void> {
    // One fsync at a time: a background one covers less than this call must, so wait it out.
    if (this.#backgroundSync !== undefined) await this.#backgroundSync;
    if (this.#broken) throw this.#broken;
    if (this.#syncedBytes === this.#sizeBytes) return;
    this.#explicitSyncs++;
    try {
      await this.writePending();
      await this.#syncTo(this.#writtenBytes);
    } finally {
      this.#explicitSyncs--;
    }
  }

  /**
   * Makes everything durable and cuts off the unused preallocated space, for
   * a segment that is done: recovery then expects a sealed segment to end
   * exactly at its last record.
   */
  async seal(): Promise<void> {
    await this.sync();
    if (this.#preallocateBytes === 0) return;
    this.#preallocateBytes = 0; // No more background fills.
    await this.#chained(async () => {
      if (this.#broken) throw this.#broken;
      await this.#file.truncate(this.#writtenBytes);
      this.#preallocatedEnd = this.#writtenBytes;
      await this.#syncTo(this.#writtenBytes);
    });
  }

  /** Syncs and closes the segment. */
  async close(): Promise<void> {
    if (this.#backgroundSync !== undefined) await this.#backgroundSync;
    try {
      if (!this.#broken) await this.sync();
    } finally {
      await this.#file.close();
    }
  }
}
