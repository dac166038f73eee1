/**
 * An in-memory FileSystem that can crash. It tracks, per file, how many bytes
 * are durable (synced) and, per directory, which entries are durable (the
 * directory was synced after they were created, renamed or removed). A crash
 * keeps only durable state, optionally with a random prefix of each file's
 * unsynced bytes (a torn write). It can also fail operations with ENOSPC or
 * EIO, once or always, to test error paths.
 *
 * Preallocated space (zeros past the appended bytes) is durable at once.
 * Appends over it are writes in place, and a torn one can reach the disk in
 * any order: a crash with `tearRandom` keeps a random subset of its 512-byte
 * sectors, where an append that grows the file keeps a random prefix.
 *
 * Simplification: `truncate` is treated as durable at once (the engine syncs
 * right after truncating anyway).
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { DiskFullError, IoError } from "../common/errors.ts";
import type { Random } from "../common/random.ts";
import { dirName, type FileHandle, type FileSystem } from "./fs.ts";

/** Operations that can be made to fail. */
export type MemFsOp =
  | "create"
  | "open"
  | "read"
  | "append"
  | "preallocate"
  | "sync"
  | "truncate"
  | "rename"
  | "remove"
  | "syncDir";

/** An error to inject: which paths and ops, which errno, how many times. */
export interface InjectedError {
  /** Matches the path (substring or regular expression); undefined matches every path. */
  path?: string | RegExp;
  /** Operation that fails; undefined matches every operation. */
  op?: MemFsOp;
  /** ENOSPC raises DiskFullError; EIO raises IoError. */
  code: "ENOSPC" | "EIO";
  /** How many times it fires (default 1; Infinity = always). */
  times?: number;
  /** For `append`: bytes written before the failure (a partial write). Default 0. */
  partialBytes?: number;
}

/** Sector size of the simulated disk: the unit a torn in-place write keeps or loses. */
const sectorBytes = 512;

class MemFile {
  data: Uint8Array = new Uint8Array(64);
  /** Bytes appended. */
  length = 0;
  syncedLength = 0;
  /**
   * Ranges past `syncedLength` made durable on their own by one-step durable
   * appends (an O_DSYNC write flushes only its own bytes); a sync covers them.
   */
  durableRanges: Array<[number, number]> = [];
  /** End of the zero-filled space preallocated on disk (durable at once). */
  preallocatedLength = 0;

  #ensure(need: number): void {
    if (need > this.data.length) {
      let cap = this.data.length * 2;
      while (cap < need) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.data.subarray(0, this.length));
      this.data = next;
    }
  }

  append(bytes: Uint8Array): void {
    const need = this.length + bytes.length;
    this.#ensure(need);
    this.data.set(bytes, this.length);
    this.length = need;
  }

  /** Size on disk: the appended bytes or the preallocated space, whichever ends later. */
  get physicalLength(): number {
    return Math.max(this.length, this.preallocatedLength);
  }

  /** Every byte on disk, preallocated zeros included. */
  contents(): Uint8Array {
    const out = new Uint8Array(this.physicalLength);
    out.set(this.data.subarray(0, this.length));
    return out;
  }

  /** Makes the preallocated zeros part of the appended bytes (a file opened anew sees them). */
  adoptPreallocated(): void {
    if (this.preallocatedLength <= this.length) return;
    this.#ensure(this.preallocatedLength);
    this.data.fill(0, this.length, this.preallocatedLength);
    this.length = this.preallocatedLength;
    if (this.syncedLength < this.length) this.syncedLength = this.length;
  }

  /**
   * What a crash leaves: the synced bytes, the preallocated zeros, and with
   * `tear` some unsynced bytes: a random subset of the sectors written in
   * place over preallocated space, a random prefix of the bytes that grew
   * the file past it.
   */
  crashCopy(tear: Random | undefined): MemFile {
    const f = new MemFile();
    const inPlaceEnd = Math.min(this.length, Math.max(this.syncedLength, this.preallocatedLength));
    const growthStart = Math.max(this.syncedLength, inPlaceEnd);
    const growth = this.length - growthStart;
    const keptGrowth = tear && growth > 0 ? tear.nextInt(growth + 1) : 0;
    const end = Math.max(this.preallocatedLength, this.syncedLength, growthStart + keptGrowth);
    f.data = new Uint8Array(Math.max(64, end));
    f.data.set(this.data.subarray(0, this.syncedLength));
    if (tear) {
      for (let at = this.syncedLength; at < inPlaceEnd;) {
        const next = Math.min(inPlaceEnd, (Math.floor(at / sectorBytes) + 1) * sectorBytes);
        if (tear.nextInt(2) === 1) f.data.set(this.data.subarray(at, next), at);
        at = next;
      }
      f.data.set(this.data.subarray(growthStart, growthStart + keptGrowth), growthStart);
    }
    let kept = end;
    for (const [from, to] of this.durableRanges) {
      const stop = Math.min(to, this.length);
      if (stop <= from) continue;
      if (stop > f.data.length) {
        const grown = new Uint8Array(stop);
        grown.set(f.data);
        f.data = grown;
      }
      f.data.set(this.data.subarray(from, stop), from);
      if (stop > kept) kept = stop;
    }
    f.length = kept;
    f.syncedLength = kept;
    return f;
  }
}

/** Options for a simulated crash. */
export interface CrashOptions {
  /** When given, each file keeps a random prefix of its unsynced bytes (a torn write). */
  tearRandom?: Random;
}

/** In-memory, crashable, error-injecting FileSystem for tests. */
export class MemFileSystem implements FileSystem {
  #files = new Map<string, MemFile>();
  #durable = new Map<string, MemFile>();
  #dirs = new Set<string>(["/", "."]);
  #errors: InjectedError[] = [];
  #generation = 0;
  readonly #oneStepAppends: boolean;

  /**
   * `oneStepAppends`: handles get `appendDurable`, which makes only the
   * bytes it appends durable, as an O_DSYNC write does on a real disk.
   */
  constructor(opts?: { oneStepAppends?: boolean }) {
    this.#oneStepAppends = opts?.oneStepAppends ?? false;
  }

  /** Fails matching future operations (see InjectedError). */
  injectError(e: InjectedError): void {
    this.#errors.push({ ...e, times: e.times ?? 1 });
  }

  /** Removes every injected error. */
  clearErrors(): void {
    this.#errors = [];
  }

  #check(op: MemFsOp, path: string): InjectedError | undefined {
    for (const e of this.#errors) {
      if (e.op !== undefined && e.op !== op) continue;
      if (e.path !== undefined) {
        if (typeof e.path === "string" ? !path.includes(e.path) : !e.path.test(path)) continue;
      }
      if ((e.times ?? 1) <= 0) continue;
      e.times = (e.times ?? 1) - 1;
      return e;
    }
    return undefined;
  }

  #maybeFail(op: MemFsOp, path: string): void {
    const e = this.#check(op, path);
    if (e) throw this.#errorFor(e, op, path);
  }

  #errorFor(e: InjectedError, op: MemFsOp, path: string): Error {
    return e.code === "ENOSPC"
      ? new DiskFullError(path)
      : new IoError(path, `injected EIO during ${op}`);
  }

  /**
   * Simulates power loss in place: files keep only synced bytes (plus a torn
   * prefix when asked), directory entries revert to the last synced state,
   * and every handle opened before the crash stops working.
   */
  crash(options: CrashOptions = {}): void {
    const next = this.#crashState(options);
    this.#files = next.files;
    this.#durable = next.durable;
    this.#generation++;
  }

  /**
   * A new MemFileSystem holding what a crash now would leave (Pebble's
   * CrashClone). The original keeps running untouched, so an abandoned engine
   * cannot disturb the clone.
   */
  crashClone(options: CrashOptions = {}): MemFileSystem {
    const c = new MemFileSystem({ oneStepAppends: this.#oneStepAppends });
    const next = this.#crashState(options);
    c.#files = next.files;
    c.#durable = next.durable;
    c.#dirs = new Set(this.#dirs);
    return c;
  }

  #crashState(
    options: CrashOptions,
  ): { files: Map<string, MemFile>; durable: Map<string, MemFile> } {
    const copies = new Map<MemFile, MemFile>();
    const files = new Map<string, MemFile>();
    for (const [path, f] of this.#durable) {
      let c = copies.get(f);
      if (!c) {
        c = f.crashCopy(options.tearRandom);
        copies.set(f, c);
      }
      files.set(path, c);
    }
    return { files, durable: new Map(files) };
  }

  /** Test helper: the current bytes of a file (a copy). */
  fileBytes(path: string): Uint8Array {
    const f = this.#files.get(path);
    if (!f) throw new IoError(path, "no such file");
    return f.contents();
  }

  /** Test helper: replaces a file's bytes (both current and durable), e.g. to flip a bit. */
  setFileBytes(path: string, bytes: Uint8Array): void {
    const f = this.#files.get(path);
    if (!f) throw new IoError(path, "no such file");
    f.data = bytes.slice();
    if (f.data.length === 0) f.data = new Uint8Array(64);
    f.length = bytes.length;
    f.syncedLength = bytes.length;
    f.preallocatedLength = 0;
  }

  /** Test helper: every file path, sorted. */
  paths(): string[] {
    return [...this.#files.keys()].sort();
  }

  #handle(path: string, file: MemFile): FileHandle {
    const generation = this.#generation;
    const live = (op: MemFsOp) => {
      if (generation !== this.#generation) {
        throw new IoError(path, `handle used after a simulated crash (${op})`);
      }
      this.#maybeFail(op, path);
    };
    let closed = false;
    const handle: FileHandle = {
      path,
      read: (offset: number, length: number) => {
        assert(offset >= 0 && length >= 0, "read range must be non-negative");
        live("read");
        if (closed) throw new IoError(path, "read after close");
        const end = Math.min(file.length, offset + length);
        return Promise.resolve(file.data.slice(Math.min(offset, end), end));
      },
      append: (data: Uint8Array) => {
        if (generation !== this.#generation) {
          return Promise.reject(new IoError(path, "handle used after a simulated crash"));
        }
        const e = this.#check("append", path);
        if (e) {
          if (e.partialBytes) file.append(data.subarray(0, Math.min(e.partialBytes, data.length)));
          return Promise.reject(this.#errorFor(e, "append", path));
        }
        file.append(data);
        return Promise.resolve();
      },
      preallocate: (untilBytes: number) => {
        try {
          live("preallocate");
        } catch (e) {
          return Promise.reject(e);
        }
        if (untilBytes > file.preallocatedLength) file.preallocatedLength = untilBytes;
        return Promise.resolve();
      },
      syncData: () => {
        try {
          live("sync");
        } catch (e) {
          return Promise.reject(e);
        }
        file.syncedLength = file.length;
        file.durableRanges = [];
        return Promise.resolve();
      },
      truncate: (sizeBytes: number) => {
        try {
          live("truncate");
        } catch (e) {
          return Promise.reject(e);
        }
        file.length = Math.min(file.length, sizeBytes);
        file.syncedLength = Math.min(file.syncedLength, file.length);
        file.durableRanges = file.durableRanges.filter(([from]) => from < file.length);
        file.preallocatedLength = Math.min(file.preallocatedLength, sizeBytes);
        return Promise.resolve();
      },
      size: () => Promise.resolve(file.length),
      close: () => {
        closed = true;
        return Promise.resolve();
      },
    };
    if (this.#oneStepAppends) {
      // Like an O_DSYNC write: the appended bytes become durable, and nothing before them.
      handle.appendDurable = async (data: Uint8Array) => {
        const from = file.length;
        await handle.append(data);
        live("sync");
        if (from <= file.syncedLength) file.syncedLength = file.length;
        else file.durableRanges.push([from, file.length]);
      };
    }
    return handle;
  }

  create(path: string): Promise<FileHandle> {
    try {
      this.#maybeFail("create", path);
      if (!this.#dirs.has(dirName(path))) throw new IoError(path, "no such directory");
    } catch (e) {
      return Promise.reject(e);
    }
    const f = new MemFile();
    this.#files.set(path, f);
    return Promise.resolve(this.#handle(path, f));
  }

  open(path: string): Promise<FileHandle> {
    const f = this.#files.get(path);
    try {
      this.#maybeFail("open", path);
      if (!f) throw new IoError(path, "no such file");
    } catch (e) {
      return Promise.reject(e);
    }
    f.adoptPreallocated();
    return Promise.resolve(this.#handle(path, f));
  }

  readFile(path: string): Promise<Uint8Array> {
    const f = this.#files.get(path);
    try {
      this.#maybeFail("read", path);
      if (!f) throw new IoError(path, "no such file");
    } catch (e) {
      return Promise.reject(e);
    }
    return Promise.resolve(f.contents());
  }

  rename(from: string, to: string): Promise<void> {
    const f = this.#files.get(from);
    try {
      this.#maybeFail("rename", from);
      if (!f) throw new IoError(from, "rename: no such file");
    } catch (e) {
      return Promise.reject(e);
    }
    this.#files.delete(from);
    this.#files.set(to, f);
    return Promise.resolve();
  }

  remove(path: string): Promise<void> {
    try {
      this.#maybeFail("remove", path);
    } catch (e) {
      return Promise.reject(e);
    }
    this.#files.delete(path);
    return Promise.resolve();
  }

  list(dir: string): Promise<string[]> {
    const prefix = dir.endsWith("/") ? dir : dir + "/";
    const names: string[] = [];
    for (const p of this.#files.keys()) {
      if (p.startsWith(prefix) && !p.slice(prefix.length).includes("/")) {
        names.push(p.slice(prefix.length));
      }
    }
    return Promise.resolve(names.sort());
  }

  mkdir(dir: string): Promise<void> {
    let d = dir;
    while (d !== "." && d !== "/" && d !== "") {
      this.#dirs.add(d);
      d = dirName(d);
    }
    return Promise.resolve();
  }

  syncDir(dir: string): Promise<void> {
    try {
      this.#maybeFail("syncDir", dir);
    } catch (e) {
      return Promise.reject(e);
    }
    const inDir = (p: string) => dirName(p) === dir;
    for (const p of [...this.#durable.keys()]) if (inDir(p)) this.#durable.delete(p);
    for (const [p, f] of this.#files) if (inDir(p)) this.#durable.set(p, f);
    return Promise.resolve();
  }

  stat(path: string): Promise<{ sizeBytes: number } | undefined> {
    const f = this.#files.get(path);
    return Promise.resolve(f ? { sizeBytes: f.physicalLength } : undefined);
  }
}
