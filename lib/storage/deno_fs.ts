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
import { type FileHandle as NodeFileHandle, open as openForReading } from "node:fs/promises";

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

class DenoFileHandle implements FileHandle {
  #file: Deno.FsFile;
  #sizeBytes: number;
  /** Appends and truncates run one after another (the file position stays at the end). */
  #writeChain: Promise<unknown> = Promise.resolve();
  /**
   * A second, read-only handle for positional reads (pread): one call per
   * read instead of seek + read + seek, and reads need not wait for each
   * other or for appends (they only read bytes already written).
   */
  #reader: Promise<NodeFileHandle> | undefined;
  #closed = false;

  constructor(readonly path: string, file: Deno.FsFile, sizeBytes: number) {
    this.#file = file;
    this.#sizeBytes = sizeBytes;
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

  append(data: Uint8Array): Promise<void> {
    const run = async () => {
      let done = 0;
      while (done < data.length) done += await this.#file.write(data.subarray(done));
      this.#sizeBytes += data.length;
    };
    const p = this.#writeChain.then(run, run);
    this.#writeChain = p.catch(() => {});
    return p.catch((e) => {
      throw mapIoError(this.path, e);
    });
  }

  async syncData(): Promise<void> {
    try {
      await this.#file.syncData();
    } catch (e) {
      throw mapIoError(this.path, e);
    }
  }

  async truncate(sizeBytes: number): Promise<void> {
    try {
      await this.#writeChain;
      await this.#file.truncate(sizeBytes);
      this.#sizeBytes = sizeBytes;
      await this.#file.seek(0, Deno.SeekMode.End);
    } catch (e) {
      throw mapIoError(this.path, e);
    }
  }

  size(): Promise<number> {
    return Promise.resolve(this.#sizeBytes);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#writeChain;
    this.#file.close();
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
      await f.seek(0, Deno.SeekMode.End);
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
