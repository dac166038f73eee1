/**
 * The real FileSystem on Deno's async file APIs. Durability follows the
 * rules in docs/FORMATS.md: `syncData` makes file bytes durable, and the
 * directory is fsynced after every create, rename and delete the engine
 * wants to survive a crash (the engine calls `syncDir` explicitly).
 *
 * @module
 */

import { DiskFullError, IoError, KVError } from "../common/errors.ts";
import type { FileHandle, FileSystem } from "./fs.ts";
import {
  SyncWriteError,
  syncWriteMaxBytes,
  SyncWriteThread,
  SyncWriteUnavailableError,
} from "./sync_write_thread.ts";
import { type FileHandle as NodeFileHandle, open as openForReading } from "node:fs/promises";

/** Turns a Deno error into the KVError family, naming the file. */
export function mapIoError(path: string, e: unknown): Error {
  if (e instanceof KVError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  const code = e instanceof SyncWriteError ? e.code : (e as { code?: string }).code;
  if (code === "ENOSPC" || /No space left|os error 28/i.test(msg)) {
    return new DiskFullError(path, { cause: e });
  }
  return new IoError(path, msg, { cause: e });
}

/** The zero bytes preallocation writes, shared (never written to). */
const zeroChunk = new Uint8Array(1 << 20);

/** Writes all of `data` at the file's position (repeated on short writes). */
async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let done = 0;
  for (let i = 0; done < data.length && i < 1_000_000; i++) {
    done += await file.write(data.subarray(done));
  }
  if (done < data.length) throw new Error(`short write: ${done} of ${data.length} bytes`);
}

/**
 * The open handles by current path, process-wide: a handle opens its file
 * again by path (the zero-filling handle, the durable-write thread), so a
 * rename must tell the handles of the file where it went. (Files renamed by
 * other means are caught by the inode check in #openSyncSlot.)
 */
const openHandles = new Map<string, Set<DenoFileHandle>>();

function registerHandle(h: DenoFileHandle): void {
  let set = openHandles.get(h.currentPath);
  if (set === undefined) openHandles.set(h.currentPath, set = new Set());
  set.add(h);
}

function unregisterHandle(h: DenoFileHandle): void {
  const set = openHandles.get(h.currentPath);
  set?.delete(h);
  if (set?.size === 0) openHandles.delete(h.currentPath);
}

/** After a rename of `from` to `to`: the handles of `from` now name `to`. */
function moveHandles(from: string, to: string): void {
  const set = openHandles.get(from);
  if (set === undefined) return;
  openHandles.delete(from);
  for (const h of set) {
    h.movedTo(to);
    registerHandle(h);
  }
}

/**
 * Writes, fsyncs and truncates go through Deno's async file API, which runs
 * each call on the runtime's blocking thread pool: the event loop never waits
 * on the disk. (node:fs/promises writes run on the calling thread in Deno
 * 2.9, blocking the event loop for the whole write; its reads go to the
 * thread pool like Deno's, so it serves positional reads only.)
 */
class DenoFileHandle implements FileHandle {
  /** Read-write handle; its position is the end of the appends. */
  #file: Deno.FsFile;
  /** Bytes appended (where the next append goes). */
  #sizeBytes: number;
  /**
   * End of the file on disk once the writes started so far land: at least
   * #sizeBytes, more while an append is in flight or zeros were preallocated.
   */
  #physicalBytes: number;
  /** Appends and truncates run one after another (the file position stays at the end). */
  #writeChain: Promise<unknown> = Promise.resolve();
  /**
   * A second, read-only handle for positional reads (pread): one call per
   * read instead of seek + read + seek, and reads need not wait for each
   * other or for appends (they only read bytes already written).
   */
  #reader: Promise<NodeFileHandle> | undefined;
  /** A second read-write handle (its own position) that writes preallocated zeros. */
  #filler: Promise<Deno.FsFile> | undefined;
  /** The preallocation in flight: appends ending past `from` wait for it. */
  #filling: { from: number; done: Promise<void> } | undefined;
  #closed = false;
  /**
   * This file's slot in the durable-write thread once a durable append
   * opened it there; null: the thread could not open this file.
   */
  #syncSlot: number | null | undefined;
  /** The thread is opening this file (close waits for it). */
  #openingSlot: Promise<number | null> | undefined;
  /** Where the file is now (renames through DenoFileSystem move it; see openHandles). */
  #currentPath: string;
  /** Appends and truncates queued or running. */
  #chainLength = 0;
  /**
   * The thread wrote at explicit offsets, so #file's position is behind the
   * end of the appends: the next append through #file seeks first.
   */
  #positionStale = false;

  constructor(readonly path: string, file: Deno.FsFile, sizeBytes: number) {
    this.#file = file;
    this.#sizeBytes = sizeBytes;
    this.#physicalBytes = sizeBytes;
    this.#currentPath = path;
    registerHandle(this);
  }

  /** The path the file has now (a second handle, or the write thread, opens it by that). */
  get currentPath(): string {
    return this.#currentPath;
  }

  /** DenoFileSystem.rename moved the file to `path`. */
  movedTo(path: string): void {
    this.#currentPath = path;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const want = Math.max(0, Math.min(length, this.#sizeBytes - offset));
    const out = new Uint8Array(want);
    if (want === 0) return out;
    try {
      this.#reader ??= this.#openReader();
      const reader = await this.#reader;
      let got = 0;
      for (let i = 0; got < want && i < 1_000_000; i++) {
        const { bytesRead } = await reader.read(out, got, want - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return got === want ? out : out.subarray(0, got);
    } catch (e) {
      throw mapIoError(this.path, e);
    }
  }

  /** No append or truncate is queued or running. */
  #chainIdle(): boolean {
    return this.#chainLength === 0;
  }

  /**
   * Runs `write` after every earlier append and truncate, mapping its errors;
   * with `startIfIdle` and nothing queued, it starts within this call.
   */
  #chained(write: () => Promise<void>, startIfIdle = false): Promise<void> {
    const p = startIfIdle && this.#chainIdle() ? write() : this.#writeChain.then(write, write);
    this.#chainLength++;
    this.#writeChain = p.then(this.#dequeued, this.#dequeued);
    return p.catch((e) => {
      throw mapIoError(this.path, e);
    });
  }

  readonly #dequeued = () => {
    this.#chainLength--;
  };

  /** Appends `data` at the end, first waiting for a preallocation it would reach into. */
  async #appendNow(data: Uint8Array): Promise<void> {
    const at = this.#sizeBytes;
    const end = at + data.length;
    const fill = this.#filling;
    if (fill !== undefined && end > fill.from) await fill.done.catch(() => {});
    if (end > this.#physicalBytes) this.#physicalBytes = end;
    if (this.#positionStale) {
      await this.#file.seek(at, Deno.SeekMode.Start);
      this.#positionStale = false;
    }
    await writeAll(this.#file, data);
    this.#sizeBytes = end;
  }

  append(data: Uint8Array): Promise<void> {
    return this.#chained(() => this.#appendNow(data));
  }

  expectAppendDurable(): void {
    if (typeof this.#syncSlot === "number" && this.#chainIdle()) {
      SyncWriteThread.shared()?.expectWrite();
    }
  }

  /**
   * Through the durable-write thread (lib/storage/sync_write_thread.ts):
   * one O_DSYNC write instead of a write and an fdatasync. Where that thread
   * is unavailable, or `data` is larger than its buffer, a write and an
   * fdatasync.
   */
  appendDurable(data: Uint8Array): Promise<void> {
    const thread = data.length <= syncWriteMaxBytes && this.#syncSlot !== null
      ? SyncWriteThread.shared()
      : undefined;
    if (thread === undefined) return this.#chained(() => this.#appendAndSyncNow(data));
    const durableAppend = async () => {
      if (this.#syncSlot === undefined) await this.#openSyncSlot(thread);
      const slot = this.#syncSlot;
      if (typeof slot !== "number") return this.#appendAndSyncNow(data);
      const at = this.#sizeBytes;
      const end = at + data.length;
      const fill = this.#filling;
      if (fill !== undefined && end > fill.from) await fill.done.catch(() => {});
      if (end > this.#physicalBytes) this.#physicalBytes = end;
      try {
        await thread.write(slot, at, data);
      } catch (e) {
        if (!(e instanceof SyncWriteUnavailableError)) throw e;
        // The thread never took it: nothing was written, so write it the other way.
        this.#syncSlot = null;
        return this.#appendAndSyncNow(data);
      }
      this.#sizeBytes = end;
      this.#positionStale = true;
    };
    // With nothing ahead of it, the write starts within this call (see SyncWriteThread.write).
    return this.#chained(durableAppend, true);
  }

  /** A durable append without the thread: a write, then an fdatasync. */
  async #appendAndSyncNow(data: Uint8Array): Promise<void> {
    await this.#appendNow(data);
    await this.#file.syncData();
  }

  /**
   * Opens this file in the durable-write thread, by its current path, and
   * checks that the thread got this very file (same inode and device); if
   * not, or if the open fails, this handle appends durably without it.
   */
  async #openSyncSlot(thread: SyncWriteThread): Promise<void> {
    const opening = (async () => {
      const mine = await this.#file.stat();
      const theirs = await thread.open(this.#currentPath);
      if (theirs.ino === mine.ino && theirs.dev === mine.dev) return theirs.slot;
      await thread.close(theirs.slot);
      return null;
    })();
    this.#openingSlot = opening;
    try {
      this.#syncSlot = await opening.catch(() => null);
    } finally {
      this.#openingSlot = undefined;
    }
  }

  /** The positional reader, opened by the current path and checked like #openSecondHandle's. */
  #openReader(): Promise<NodeFileHandle> {
    return this.#reopened(openForReading(this.#currentPath, "r"));
  }

  /**
   * A second write handle on this file, opened by its current path and
   * checked to be this very file: zeros written through a handle on another
   * file would destroy that file's data.
   */
  #openSecondHandle(): Promise<Deno.FsFile> {
    return this.#reopened(Deno.open(this.#currentPath, { write: true }));
  }

  /**
   * `opening` (this file opened again by path) once it is checked to be this
   * very file (same inode and device); else it is closed and this rejects.
   */
  async #reopened<T extends { stat(): Promise<{ ino: number | null; dev: number }> }>(
    opening: Promise<T & { close(): unknown }>,
  ): Promise<T> {
    const other = await opening;
    try {
      const [mine, theirs] = await Promise.all([this.#file.stat(), other.stat()]);
      if (mine.ino !== theirs.ino || mine.dev !== theirs.dev) {
        throw new Error(`${this.#currentPath} is no longer the file this handle has open`);
      }
      return other;
    } catch (e) {
      await other.close();
      throw e;
    }
  }

  preallocate(untilBytes: number): Promise<void> {
    // Fill from past every write started so far: this runs beside appends, not
    // after them, and appends that reach into the range wait for it.
    const from = this.#physicalBytes;
    if (untilBytes <= from || this.#filling !== undefined) {
      return this.#filling?.done ?? Promise.resolve();
    }
    this.#physicalBytes = untilBytes;
    const fill = async () => {
      try {
        this.#filler ??= this.#openSecondHandle();
        const filler = await this.#filler;
        await filler.seek(from, Deno.SeekMode.Start);
        for (let at = from; at < untilBytes; at += zeroChunk.length) {
          await writeAll(
            filler,
            zeroChunk.subarray(0, Math.min(zeroChunk.length, untilBytes - at)),
          );
        }
        await filler.syncData();
      } catch (e) {
        throw mapIoError(this.path, e);
      } finally {
        this.#filling = undefined;
      }
    };
    const done = fill();
    this.#filling = { from, done };
    return done;
  }

  async syncData(): Promise<void> {
    try {
      await this.#file.syncData();
    } catch (e) {
      throw mapIoError(this.path, e);
    }
  }

  truncate(sizeBytes: number): Promise<void> {
    return this.#chained(async () => {
      await this.#filling?.done.catch(() => {});
      await this.#file.truncate(sizeBytes);
      await this.#file.seek(sizeBytes, Deno.SeekMode.Start);
      this.#positionStale = false;
      this.#sizeBytes = sizeBytes;
      this.#physicalBytes = sizeBytes;
    });
  }

  size(): Promise<number> {
    return Promise.resolve(this.#sizeBytes);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    unregisterHandle(this);
    await this.#writeChain;
    await this.#openingSlot?.catch(() => {});
    if (typeof this.#syncSlot === "number") {
      await SyncWriteThread.shared()?.close(this.#syncSlot).catch(() => {});
    }
    await this.#filling?.done.catch(() => {});
    this.#file.close();
    if (this.#filler) (await this.#filler.catch(() => undefined))?.close();
    if (this.#reader) await (await this.#reader.catch(() => undefined))?.close();
  }
}

/** FileSystem backed by the real disk through Deno's async APIs. */
export class DenoFileSystem implements FileSystem {
  async create(path: string): Promise<FileHandle> {
    try {
      const f = await Deno.open(path, { read: true, write: true, create: true, truncate: true });
      return new DenoFileHandle(path, f, 0);
    } catch (e) {
      throw mapIoError(path, e);
    }
  }

  async open(path: string): Promise<FileHandle> {
    try {
      const f = await Deno.open(path, { read: true, write: true });
      const size = (await f.stat()).size;
      await f.seek(size, Deno.SeekMode.Start);
      return new DenoFileHandle(path, f, size);
    } catch (e) {
      throw mapIoError(path, e);
    }
  }

  async readFile(path: string): Promise<Uint8Array> {
    try {
      return await Deno.readFile(path);
    } catch (e) {
      throw mapIoError(path, e);
    }
  }

  async rename(from: string, to: string): Promise<void> {
    try {
      await Deno.rename(from, to);
    } catch (e) {
      throw mapIoError(from, e);
    }
    moveHandles(from, to);
  }

  async remove(path: string): Promise<void> {
    try {
      await Deno.remove(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw mapIoError(path, e);
    }
  }

  async list(dir: string): Promise<string[]> {
    const names: string[] = [];
    try {
      for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    } catch (e) {
      throw mapIoError(dir, e);
    }
    return names.sort();
  }

  async mkdir(dir: string): Promise<void> {
    try {
      await Deno.mkdir(dir, { recursive: true });
    } catch (e) {
      throw mapIoError(dir, e);
    }
  }

  async syncDir(dir: string): Promise<void> {
    let f: Deno.FsFile | undefined;
    try {
      f = await Deno.open(dir, { read: true });
      await f.sync();
    } catch (e) {
      throw mapIoError(dir, e);
    } finally {
      f?.close();
    }
  }

  async stat(path: string): Promise<{ sizeBytes: number } | undefined> {
    try {
      const s = await Deno.stat(path);
      return { sizeBytes: s.size };
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw mapIoError(path, e);
    }
  }
}
