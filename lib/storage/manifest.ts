/**
 * The manifest: a framed-record log of version edits plus the CURRENT file
 * that names it (docs/FORMATS.md, "Manifest"). A new manifest begins with a
 * snapshot edit and is synced before CURRENT is switched to it through a
 * temp file, a rename and a directory fsync, so CURRENT always names a
 * complete manifest.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { fromUtf8, utf8 } from "../common/bytes.ts";
import { CorruptionError } from "../common/errors.ts";
import { type FileHandle, type FileSystem, joinPath } from "./fs.ts";
import { frameRecord, readRecords } from "./record_log.ts";
import { Version } from "./version.ts";
import { decodeEdit, encodeEdit, type VersionEdit } from "./version_edit.ts";

/** Name of manifest file `n`. */
export function manifestFileName(n: number): string {
  return `MANIFEST-${String(n).padStart(6, "0")}`;
}

/** The durable state a manifest describes. */
export interface ManifestState {
  version: Version;
  logNumber: number;
  nextFileNumber: number;
  lastVersion: number;
  compactedVersion: number;
  appliedIndex: number;
  compactPointers: Map<number, Uint8Array>;
}

/** The state before any edit. */
export function emptyManifestState(): ManifestState {
  return {
    version: Version.empty(),
    logNumber: 0,
    nextFileNumber: 1,
    lastVersion: 0,
    compactedVersion: 0,
    appliedIndex: -1,
    compactPointers: new Map(),
  };
}

/** Applies an edit to the scalar fields (the caller applies the file changes). */
export function applyScalars(s: ManifestState, e: VersionEdit): void {
  if (e.logNumber !== undefined) s.logNumber = Math.max(s.logNumber, e.logNumber);
  if (e.nextFileNumber !== undefined) {
    s.nextFileNumber = Math.max(s.nextFileNumber, e.nextFileNumber);
  }
  if (e.lastVersion !== undefined) s.lastVersion = Math.max(s.lastVersion, e.lastVersion);
  if (e.compactedVersion !== undefined) {
    s.compactedVersion = Math.max(s.compactedVersion, e.compactedVersion);
  }
  if (e.appliedIndex !== undefined) s.appliedIndex = Math.max(s.appliedIndex, e.appliedIndex);
  for (const p of e.compactPointers ?? []) s.compactPointers.set(p.level, p.key);
}

/** The edit that recreates `s` from nothing (first record of a new manifest). */
export function snapshotEdit(s: ManifestState): VersionEdit {
  return {
    logNumber: s.logNumber,
    nextFileNumber: s.nextFileNumber,
    lastVersion: s.lastVersion,
    compactedVersion: s.compactedVersion,
    appliedIndex: s.appliedIndex,
    newFiles: s.version.levels.flatMap((files, level) => files.map((meta) => ({ level, meta }))),
    compactPointers: [...s.compactPointers].map(([level, key]) => ({ level, key })),
  };
}

/** Reads CURRENT; undefined when the directory holds no engine yet. */
export async function readCurrent(fs: FileSystem, dir: string): Promise<string | undefined> {
  const path = joinPath(dir, "CURRENT");
  if ((await fs.stat(path)) === undefined) return undefined;
  const text = fromUtf8(await fs.readFile(path));
  if (!/^MANIFEST-\d+\n$/.test(text)) {
    throw new CorruptionError(path, 0, `CURRENT does not name a manifest: ${JSON.stringify(text)}`);
  }
  return text.slice(0, -1);
}

/** Replays a manifest into a state. Torn tail allowed after the first record only. */
export async function recoverManifest(fs: FileSystem, path: string): Promise<ManifestState> {
  const scan = await readRecords(fs, path, true);
  if (scan.records.length === 0) {
    throw new CorruptionError(path, scan.validEndBytes, "manifest holds no valid record");
  }
  const s = emptyManifestState();
  for (const r of scan.records) {
    const edit = decodeEdit(r.payload, path, r.offset);
    for (const d of edit.deletedFiles ?? []) {
      if (!s.version.levels[d.level]?.some((f) => f.number === d.number)) {
        throw new CorruptionError(path, r.offset, `edit deletes unknown file ${d.number}`);
      }
    }
    s.version = s.version.apply(edit);
    applyScalars(s, edit);
  }
  return s;
}

/** Appends edits to the live manifest, syncing each. */
export class ManifestWriter {
  #file: FileHandle;
  #sizeBytes: number;
  #broken: Error | undefined;

  private constructor(
    readonly number: number,
    readonly path: string,
    file: FileHandle,
    size: number,
  ) {
    this.#file = file;
    this.#sizeBytes = size;
  }

  /** Bytes written. */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  /**
   * Creates manifest `number` holding `state`, syncs it, and makes CURRENT
   * name it (temp file, rename, directory fsync).
   */
  static async create(
    fs: FileSystem,
    dir: string,
    number: number,
    state: ManifestState,
  ): Promise<ManifestWriter> {
    const name = manifestFileName(number);
    const path = joinPath(dir, name);
    const file = await fs.create(path);
    const rec = frameRecord(encodeEdit(snapshotEdit(state)));
    try {
      await file.append(rec);
      await file.syncData();
      await fs.syncDir(dir);
      const tmp = joinPath(dir, "CURRENT.tmp");
      const cur = await fs.create(tmp);
      try {
        await cur.append(utf8(name + "\n"));
        await cur.syncData();
      } finally {
        await cur.close();
      }
      await fs.rename(tmp, joinPath(dir, "CURRENT"));
      await fs.syncDir(dir);
    } catch (e) {
      await file.close();
      throw e;
    }
    return new ManifestWriter(number, path, file, rec.length);
  }

  /** Appends one edit and syncs it. Requires: edits are written one at a time. */
  async append(edit: VersionEdit): Promise<void> {
    if (this.#broken) throw this.#broken;
    const rec = frameRecord(encodeEdit(edit));
    assert(rec.length > 8, "an edit record is never empty");
    try {
      await this.#file.append(rec);
      await this.#file.syncData();
    } catch (e) {
      // Cut a partial record so the next edit does not follow garbage; if that fails, stop.
      try {
        await this.#file.truncate(this.#sizeBytes);
        await this.#file.syncData();
      } catch {
        this.#broken = e instanceof Error ? e : new Error(String(e));
      }
      throw e;
    }
    this.#sizeBytes += rec.length;
  }

  /** Closes the file. */
  async close(): Promise<void> {
    await this.#file.close();
  }
}
