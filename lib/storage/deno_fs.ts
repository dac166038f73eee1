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
import nodeFs from "node:fs";
import { type FileHandle as NodeFileHandle, open as openForReading } from "node:fs/promises";
import { promisify } from "node:util";
import { concatBytes } from "../common/bytes.ts";

/** Turns a Deno error into the KVError family, naming the file. */
export function mapIoError(path: string, e: unknown): Error {
  if (e instanceof KVError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  const code = (e as { code?: string }).code;
  if (code === "ENOSPC" || /No space left|os error 28/i.test(msg)) {
    return new DiskFullError(path, { cause: e });
  }
  return new IoError(path, msg, { cause: e });
}

/** Unsynced bytes a handle keeps to rewrite with the next durable append (see appendAndSync). */
const maxUnsyncedTailBytes = 1 << 20;

function fsWrite(
  fd: number,
  data: Uint8Array,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  return new Promise((resolve, reject) =>
    nodeFs.write(fd, data, offset, length, position, (e, n) => e ? reject(e) : resolve(n))
  );
}
const fsFdatasync = promisify(nodeFs.fdatasync);
const fsFtruncate = promisify(nodeFs.ftruncate);
const fsClose = promisify(nodeFs.close);
const fsOpen = promisify(nodeFs.open);
const fsFstat = promisify(nodeFs.fstat);

/** Writes all of `data` at `position` (positional: no shared file offset to keep in step). */
async function writeAt(fd: number, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  for (let i = 0; done < data.length && i < 1_000_000; i++) {
    done += await fsWrite(fd, data, done, data.length - done, position + done);
  }
}

class DenoFileHandle implements FileHandle {
  /** Read-write descriptor for appends, truncation and fdatasync. */
  readonly #fd: number;
  /**
   * A second descriptor with O_DSYNC, opened on first use: a write through it
   * returns once durable, one disk operation instead of a write and an
   * fdatasync, each a trip through the runtime's blocking thread pool.
   */
  #syncFd: Promise<number> | undefined;
  #sizeBytes: number;
  /** Bytes known durable (everything below was written and then synced). */
  #syncedBytes: number;
  /**
   * The bytes appended since the last sync, in order from #syncedBytes, or
   * undefined when they outgrew maxUnsyncedTailBytes (or a truncate cut them).
   * An O_DSYNC write syncs only its own range, so a durable append rewrites
   * these bytes (unchanged) ahead of its own.
   */
  #unsynced: Uint8Array[] | undefined = [];
  #unsyncedBytes = 0;
  /** Appends and truncates run one after another. */
  #writeChain: Promise<unknown> = Promise.resolve();
  /**
   * A read-only handle for positional reads (pread): reads need not wait for
   * each other or for appends (they only read bytes already written).
   */
  #reader: Promise<NodeFileHandle> | undefined;
  #closed = false;

  constructor(readonly path: string, fd: number, sizeBytes: number) {
    this.#fd = fd;
    this.#sizeBytes = sizeBytes;
    this.#syncedBytes = sizeBytes;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const want = Math.max(0, Math.min(length, this.#sizeBytes - offset));
    const out = new Uint8Array(want);
    if (want === 0) return out;
    try {
      this.#reader ??= openForReading(this.path, "r");
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

  #chained<T>(op: () => Promise<T>): Promise<T> {
    const p = this.#writeChain.then(op, op);
    this.#writeChain = p.catch(() => {});
    return p.catch((e) => {
      throw mapIoError(this.path, e);
    });
  }

  #rememberUnsynced(data: Uint8Array): void {
    if (this.#unsynced === undefined) return;
    if (this.#unsyncedBytes + data.length > maxUnsyncedTailBytes) {
      this.#unsynced = undefined;
      this.#unsyncedBytes = 0;
      return;
    }
    this.#unsynced.push(data);
    this.#unsyncedBytes += data.length;
  }

  append(data: Uint8Array): Promise<void> {
    return this.#chained(async () => {
      await writeAt(this.#fd, data, this.#sizeBytes);
      this.#sizeBytes += data.length;
      this.#rememberUnsynced(data);
    });
  }

  async syncData(): Promise<void> {
    // Appends started before this call are complete first, so the sync covers them.
    await this.#writeChain;
    const target = this.#sizeBytes;
    const pieces = this.#unsynced?.length ?? 0;
    try {
      await fsFdatasync(this.#fd);
    } catch (e) {
      throw mapIoError(this.path, e);
    }
    if (target > this.#syncedBytes) this.#syncedBytes = target;
    if (this.#syncedBytes === this.#sizeBytes) {
      this.#unsynced = [];
      this.#unsyncedBytes = 0;
    } else if (this.#unsynced !== undefined) {
      // Appends made while syncing stay unsynced.
      for (const b of this.#unsynced.splice(0, pieces)) this.#unsyncedBytes -= b.length;
    }
  }

  appendAndSync(data: Uint8Array): Promise<void> {
    return this.#chained(async () => {
      const tail = this.#unsynced;
      if (tail === undefined || this.#syncedBytes + this.#unsyncedBytes !== this.#sizeBytes) {
        // The unsynced bytes are not all at hand: write, then sync the whole file.
        await writeAt(this.#fd, data, this.#sizeBytes);
        this.#sizeBytes += data.length;
        await fsFdatasync(this.#fd);
      } else {
        this.#syncFd ??= fsOpen(this.path, nodeFs.constants.O_WRONLY | nodeFs.constants.O_DSYNC);
        const fd = await this.#syncFd;
        const bytes = tail.length === 0 ? data : concatBytes(...tail, data);
        await writeAt(fd, bytes, this.#syncedBytes);
        this.#sizeBytes += data.length;
      }
      this.#syncedBytes = this.#sizeBytes;
      this.#unsynced = [];
      this.#unsyncedBytes = 0;
    });
  }

  truncate(sizeBytes: number): Promise<void> {
    return this.#chained(async () => {
      await fsFtruncate(this.#fd, sizeBytes);
      this.#sizeBytes = sizeBytes;
      if (this.#syncedBytes > sizeBytes) this.#syncedBytes = sizeBytes;
      // Durable only after the next sync; until then durable appends take the two-step path.
      this.#unsynced = undefined;
      this.#unsyncedBytes = 0;
    });
  }

  size(): Promise<number> {
    return Promise.resolve(this.#sizeBytes);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#writeChain;
    await fsClose(this.#fd).catch(() => {});
    if (this.#syncFd) await fsClose(await this.#syncFd).catch(() => {});
    if (this.#reader) await (await this.#reader.catch(() => undefined))?.close();
  }
}

/** FileSystem backed by the real disk through Deno's async APIs. */
export class DenoFileSystem implements FileSystem {
  async create(path: string): Promise<FileHandle> {
    try {
      return new DenoFileHandle(path, await fsOpen(path, "w+", 0o644), 0);
    } catch (e) {
      throw mapIoError(path, e);
    }
  }

  async open(path: string): Promise<FileHandle> {
    try {
      const fd = await fsOpen(path, "r+");
      return new DenoFileHandle(path, fd, (await fsFstat(fd)).size);
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
