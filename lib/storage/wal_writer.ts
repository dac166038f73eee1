/**
 * The write-ahead-log segment writer. It appends buffers of already-framed
 * records (one buffer per group commit) and syncs them; the group-commit
 * queue that fills those buffers lives in the engine, next to the memtable it
 * must stay in step with. On a failed append it cuts the file back to the
 * last good record so later records never follow garbage.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { IoError } from "../common/errors.ts";
import type { FileHandle } from "./fs.ts";

/** Appends group-commit buffers to one WAL segment. */
export class WalWriter {
  #file: FileHandle;
  #sizeBytes: number;
  #syncedBytes: number;
  /** Set when the segment can no longer be trusted (a failed truncate or fsync). */
  #broken: Error | undefined;
  /** Count of fsyncs issued (for stats and the benchmark). */
  syncCount = 0;
  /** Count of records appended. */
  recordCount = 0;

  constructor(readonly number: number, file: FileHandle, sizeBytes: number) {
    this.#file = file;
    this.#sizeBytes = sizeBytes;
    this.#syncedBytes = sizeBytes;
  }

  /** Path of the segment. */
  get path(): string {
    return this.#file.path;
  }

  /** Bytes written so far. */
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
  async append(buf: Uint8Array, records: number): Promise<void> {
    if (this.#broken) throw this.#broken;
    const before = this.#sizeBytes;
    try {
      await this.#file.append(buf);
    } catch (e) {
      try {
        await this.#file.truncate(before);
      } catch (t) {
        this.#broken = t instanceof Error ? t : new IoError(this.path, String(t));
      }
      throw e;
    }
    this.#sizeBytes = before + buf.length;
    this.recordCount += records;
  }

  /** Makes everything appended so far durable. A failed fsync breaks the writer for good. */
  async sync(): Promise<void> {
    if (this.#broken) throw this.#broken;
    if (this.#syncedBytes === this.#sizeBytes) return;
    const target = this.#sizeBytes;
    try {
      await this.#file.syncData();
    } catch (e) {
      // After a failed fsync the page cache state is unknown (fsyncgate): stop writing here.
      this.#broken = e instanceof Error ? e : new IoError(this.path, String(e));
      throw e;
    }
    this.syncCount++;
    assert(target >= this.#syncedBytes, "synced size only grows");
    this.#syncedBytes = target;
  }

  /** Syncs and closes the segment. */
  async close(): Promise<void> {
    try {
      if (!this.#broken) await this.sync();
    } finally {
      await this.#file.close();
    }
  }
}
