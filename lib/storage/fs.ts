/**
 * The FileSystem seam. Every byte the engine reads or writes goes through
 * this small interface, so tests can swap in an in-memory disk that loses
 * unsynced data, tears writes, forgets directory entries, or fails with
 * ENOSPC / EIO on demand (LevelDB's `Env`, Pebble's `vfs`).
 *
 * Files are append-only once written: the engine never overwrites bytes in
 * place, it only appends (possibly into zero-filled space preallocated past
 * the end), truncates a torn tail, renames, and deletes.
 *
 * @module
 */

/** An open file. Reads are positional; writes always append at the end. */
export interface FileHandle {
  /** The path the file was opened under (for error messages). */
  readonly path: string;
  /**
   * Reads up to `length` bytes at `offset`. Returns fewer bytes only at the end of the file.
   * Requires: offset >= 0, length >= 0.
   */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Appends `data` at the end of the file (not durable until `syncData`). */
  append(data: Uint8Array): Promise<void>;
  /**
   * Zero-fills the file on disk from its current physical end up to
   * `untilBytes` and makes that durable. `size()`, where appends go, does not
   * change: appends then overwrite zeros, so a durable append writes data
   * only, without the metadata update (and journal commit) that growing the
   * file costs. Appends that reach into the range being filled wait for it.
   */
  preallocate(untilBytes: number): Promise<void>;
  /**
   * Optional: appends `data` and makes it durable in one step. Requires
   * that every byte appended before it is durable already (the caller tracks
   * that). A failure leaves unknown which of the bytes reached the disk, as
   * a failed `syncData` does. Absent: `append` then `syncData`.
   */
  appendDurable?(data: Uint8Array): Promise<void>;
  /** Optional: a hint that `appendDurable` follows shortly, so the file can get ready for it. */
  expectAppendDurable?(): void;
  /** Makes every appended byte (and the file size) durable. */
  syncData(): Promise<void>;
  /** Cuts the file (preallocated space included) to `sizeBytes` (durable after the next `syncData`). */
  truncate(sizeBytes: number): Promise<void>;
  /** Bytes appended (the logical size), including unsynced appends; preallocated zeros excluded. */
  size(): Promise<number>;
  /** Releases the handle. */
  close(): Promise<void>;
}

/** Directory and file operations. Paths are joined with "/". */
export interface FileSystem {
  /** Creates (or truncates) a file for appending and reading. Durable only after `syncDir`. */
  create(path: string): Promise<FileHandle>;
  /** Opens an existing file for reading and appending. */
  open(path: string): Promise<FileHandle>;
  /** Whole contents of a small file. */
  readFile(path: string): Promise<Uint8Array>;
  /** Atomically replaces `to` with `from`. Durable only after `syncDir`. */
  rename(from: string, to: string): Promise<void>;
  /** Deletes a file; a missing file is not an error. Durable only after `syncDir`. */
  remove(path: string): Promise<void>;
  /** Names (not paths) of the entries of a directory. */
  list(dir: string): Promise<string[]>;
  /** Creates a directory and its parents; an existing one is fine. */
  mkdir(dir: string): Promise<void>;
  /** Makes creations, renames and deletions inside `dir` durable. */
  syncDir(dir: string): Promise<void>;
  /** Size of a file, or undefined when it does not exist. */
  stat(path: string): Promise<{ sizeBytes: number } | undefined>;
}

/** Joins a directory and a file name. */
export function joinPath(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/** The directory part of a path ("." when there is none). */
export function dirName(path: string): string {
  const i = path.lastIndexOf("/");
  if (i < 0) return ".";
  if (i === 0) return "/";
  return path.slice(0, i);
}

/** The last component of a path. */
export function baseName(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? path : path.slice(i + 1);
}
