/**
 * The storage engine's public API: an embedded LSM key-value store with MVCC
 * (`Engine`), its write batches, and the FileSystem seam with a real and an
 * in-memory, crashable implementation.
 *
 * @module
 */
export { Engine } from "./engine.ts";
export type {
  EngineStats,
  GetOptions,
  HistoryEntry,
  HistoryOptions,
  KV,
  LevelStats,
  ScanOptions,
  WriteOptions,
} from "./engine.ts";
export type { EngineOptions } from "./options.ts";
export { WriteBatch } from "./write_batch.ts";
export type { DeleteOptions, PutOptions } from "./write_batch.ts";
export type { FileHandle, FileSystem } from "./fs.ts";
export { DenoFileSystem } from "./deno_fs.ts";
export { MemFileSystem } from "./mem_fs.ts";
export type { CrashOptions, InjectedError, MemFsOp } from "./mem_fs.ts";
