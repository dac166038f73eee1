/**
 * Version edits: the records of the manifest (docs/FORMATS.md, "Manifest").
 * Each edit is a set of tagged fields; replaying every edit in order from an
 * empty state rebuilds the live file set. Edits print as one line of text for
 * logs and golden tests (`describeEdit`).
 *
 * @module
 */

import { ByteReader, ByteWriter, DecodeError, toHex } from "../common/bytes.ts";
import { CorruptionError } from "../common/errors.ts";
import { decodeInternalKey } from "./internal_key.ts";

/** Manifest field tags. On disk: never renumber. */
export const EditTag = {
  logNumber: 1,
  nextFileNumber: 2,
  lastVersion: 3,
  compactedVersion: 4,
  appliedIndex: 5,
  deletedFile: 6,
  newFile: 7,
  compactPointer: 8,
} as const;

/** One SSTable as the manifest records it. */
export interface FileMeta {
  number: number;
  sizeBytes: number;
  entryCount: number;
  maxVersion: number;
  /** Smallest and largest internal keys. */
  smallest: Uint8Array;
  largest: Uint8Array;
  /** User keys of `smallest` / `largest` (derived, not stored). */
  smallestKey: Uint8Array;
  largestKey: Uint8Array;
}

/** Builds a FileMeta, deriving the user keys from the internal keys. */
export function makeFileMeta(
  f: Omit<FileMeta, "smallestKey" | "largestKey">,
  file = "<manifest>",
  offset = 0,
): FileMeta {
  return {
    ...f,
    smallestKey: decodeInternalKey(f.smallest, file, offset).key.slice(),
    largestKey: decodeInternalKey(f.largest, file, offset).key.slice(),
  };
}

/** A change to the engine's durable state. */
export interface VersionEdit {
  logNumber?: number;
  nextFileNumber?: number;
  lastVersion?: number;
  compactedVersion?: number;
  appliedIndex?: number;
  deletedFiles?: { level: number; number: number }[];
  newFiles?: { level: number; meta: FileMeta }[];
  compactPointers?: { level: number; key: Uint8Array }[];
}

/** Encodes an edit as a manifest payload. */
export function encodeEdit(e: VersionEdit): Uint8Array {
  const w = new ByteWriter(256);
  const num = (tag: number, v: number | undefined) => {
    if (v !== undefined) w.putUvarint(tag).putUvarint(v);
  };
  num(EditTag.logNumber, e.logNumber);
  num(EditTag.nextFileNumber, e.nextFileNumber);
  num(EditTag.lastVersion, e.lastVersion);
  num(EditTag.compactedVersion, e.compactedVersion);
  num(EditTag.appliedIndex, e.appliedIndex === undefined ? undefined : e.appliedIndex + 1);
  for (const d of e.deletedFiles ?? []) {
    w.putUvarint(EditTag.deletedFile).putUvarint(d.level).putUvarint(d.number);
  }
  for (const { level, meta } of e.newFiles ?? []) {
    w.putUvarint(EditTag.newFile).putUvarint(level).putUvarint(meta.number);
    w.putUvarint(meta.sizeBytes).putUvarint(meta.entryCount).putUvarint(meta.maxVersion);
    w.putLengthPrefixed(meta.smallest).putLengthPrefixed(meta.largest);
  }
  for (const p of e.compactPointers ?? []) {
    w.putUvarint(EditTag.compactPointer).putUvarint(p.level).putLengthPrefixed(p.key);
  }
  return w.finish();
}

/** Decodes a manifest payload; damage raises CorruptionError at `file`/`offset`. */
export function decodeEdit(payload: Uint8Array, file: string, offset: number): VersionEdit {
  const r = new ByteReader(payload);
  const e: VersionEdit = {};
  try {
    while (r.remaining > 0) {
      const tag = r.uvarint();
      switch (tag) {
        case EditTag.logNumber:
          e.logNumber = r.uvarint();
          break;
        case EditTag.nextFileNumber:
          e.nextFileNumber = r.uvarint();
          break;
        case EditTag.lastVersion:
          e.lastVersion = r.uvarint();
          break;
        case EditTag.compactedVersion:
          e.compactedVersion = r.uvarint();
          break;
        case EditTag.appliedIndex:
          e.appliedIndex = r.uvarint() - 1;
          break;
        case EditTag.deletedFile:
          (e.deletedFiles ??= []).push({ level: r.uvarint(), number: r.uvarint() });
          break;
        case EditTag.newFile: {
          const level = r.uvarint();
          const number = r.uvarint();
          const sizeBytes = r.uvarint();
          const entryCount = r.uvarint();
          const maxVersion = r.uvarint();
          const smallest = r.lengthPrefixed().slice();
          const largest = r.lengthPrefixed().slice();
          const meta = makeFileMeta(
            { number, sizeBytes, entryCount, maxVersion, smallest, largest },
            file,
            offset,
          );
          (e.newFiles ??= []).push({ level, meta });
          break;
        }
        case EditTag.compactPointer:
          (e.compactPointers ??= []).push({ level: r.uvarint(), key: r.lengthPrefixed().slice() });
          break;
        default:
          throw new CorruptionError(file, offset, `unknown manifest tag ${tag}`);
      }
    }
  } catch (err) {
    if (err instanceof DecodeError) {
      throw new CorruptionError(file, offset, `bad version edit: ${err.message}`);
    }
    throw err;
  }
  for (const nf of e.newFiles ?? []) {
    if (nf.level > 6) throw new CorruptionError(file, offset, `bad level ${nf.level}`);
  }
  return e;
}

/** One-line rendering of an edit, for logs and golden tests. */
export function describeEdit(e: VersionEdit): string {
  const parts: string[] = [];
  if (e.logNumber !== undefined) parts.push(`log=${e.logNumber}`);
  if (e.nextFileNumber !== undefined) parts.push(`next=${e.nextFileNumber}`);
  if (e.lastVersion !== undefined) parts.push(`last=${e.lastVersion}`);
  if (e.compactedVersion !== undefined) parts.push(`compacted=${e.compactedVersion}`);
  if (e.appliedIndex !== undefined) parts.push(`applied=${e.appliedIndex}`);
  for (const d of e.deletedFiles ?? []) parts.push(`-L${d.level}:${d.number}`);
  for (const { level, meta } of e.newFiles ?? []) {
    parts.push(`+L${level}:${meta.number}[${toHex(meta.smallestKey)}..${toHex(meta.largestKey)}]`);
  }
  for (const p of e.compactPointers ?? []) parts.push(`ptr L${p.level}`);
  return parts.join(" ");
}
