/**
 * Shared helpers for the storage suites: string <-> bytes, collecting scans,
 * and locating files on a MemFileSystem.
 *
 * @module
 */

import { fromUtf8, utf8 } from "../../lib/common/bytes.ts";
import type { Engine, ScanOptions } from "../../lib/storage/engine.ts";
import type { MemFileSystem } from "../../lib/storage/mem_fs.ts";
import { WriteBatch } from "../../lib/storage/write_batch.ts";

/** UTF-8 bytes. */
export const b = utf8;
/** UTF-8 string of bytes (undefined passes through). */
export const s = (x: Uint8Array | undefined): string | undefined =>
  x === undefined ? undefined : fromUtf8(x);

/** A zero-padded key, so numeric order is byte order. */
export function keyOf(i: number): string {
  return `key${String(i).padStart(7, "0")}`;
}

/** One put in its own batch. */
export function putBatch(k: string, v: string, version?: number): WriteBatch {
  return new WriteBatch().put(utf8(k), utf8(v), version === undefined ? undefined : { version });
}

/** Every live pair of a scan as "key=value" strings. */
export async function scanAll(e: Engine, opts: ScanOptions = {}): Promise<string[]> {
  const out: string[] = [];
  for await (const kv of e.scan(opts)) out.push(`${fromUtf8(kv.key)}=${fromUtf8(kv.value)}`);
  return out;
}

/** Paths on `fs` whose name ends with `suffix`, sorted. */
export function filesEndingWith(fs: MemFileSystem, suffix: string): string[] {
  return fs.paths().filter((p) => p.endsWith(suffix));
}

/** Paths on `fs` whose base name starts with `prefix`, sorted. */
export function filesStartingWith(fs: MemFileSystem, dir: string, prefix: string): string[] {
  return fs.paths().filter((p) => p.startsWith(`${dir}/${prefix}`));
}

/** A copy of `bytes` with bit `bit` of byte `offset` flipped. */
export function flipBit(bytes: Uint8Array, offset: number, bit = 0): Uint8Array {
  const out = bytes.slice();
  out[offset] ^= 1 << bit;
  return out;
}
