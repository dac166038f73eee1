/**
 * WriteBatch: a group of puts and deletes applied atomically under one WAL
 * record, and the codec of that record's payload (docs/FORMATS.md, "WAL
 * payload"). Ops without an explicit version all receive the one version the
 * engine assigns to the batch (etcd's rule: one revision per transaction).
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { emptyBytes } from "../common/bytes.ts";
import { CorruptionError, InvalidArgumentError } from "../common/errors.ts";
import { maxKeyBytes, maxValueBytes } from "../common/limits.ts";
import { EntryKind, type EntryKindValue } from "./internal_key.ts";

/** WAL payload types. On disk: never renumber. */
export const PayloadType = { writeBatch: 1 } as const;

/** WAL op kinds. On disk: never renumber (they equal the entry kinds). */
export const OpKind = EntryKind;

/** Options of one put. */
export interface PutOptions {
  /** Explicit version (a node passes the cluster revision); else the batch's version. */
  version?: number;
  /** Absolute expiry, wall-clock ms since the Unix epoch; the key reads as absent after it. */
  expiresAtMs?: number;
}

/** Options of one delete. */
export interface DeleteOptions {
  /** Explicit version; else the batch's version. */
  version?: number;
}

function checkVersion(v: number | undefined): number {
  if (v === undefined) return 0;
  if (!Number.isSafeInteger(v) || v < 1) {
    throw new InvalidArgumentError(`version must be a safe integer >= 1, got ${v}`);
  }
  return v;
}

function checkKey(key: Uint8Array): void {
  if (key.length === 0) throw new InvalidArgumentError("key must not be empty");
  if (key.length > maxKeyBytes) {
    throw new InvalidArgumentError(
      `key is ${key.length} bytes; the limit is maxKeyBytes=${maxKeyBytes}`,
    );
  }
}

/** An ordered list of puts and deletes written atomically. */
export class WriteBatch {
  /** Op kinds (EntryKind). */
  readonly kinds: EntryKindValue[] = [];
  /** User keys. */
  readonly keys: Uint8Array[] = [];
  /** Values (empty for deletes). */
  readonly values: Uint8Array[] = [];
  /** Explicit versions, 0 where the engine assigns one. */
  readonly versions: number[] = [];
  /** Expiry ms, 0 for none. */
  readonly expiries: number[] = [];
  #byteSize = 0;

  /** Adds a put. */
  put(key: Uint8Array, value: Uint8Array, opts?: PutOptions): this {
    checkKey(key);
    if (value.length > maxValueBytes) {
      throw new InvalidArgumentError(
        `value is ${value.length} bytes; the limit is maxValueBytes=${maxValueBytes}`,
      );
    }
    const version = checkVersion(opts?.version);
    const exp = opts?.expiresAtMs ?? 0;
    if (!Number.isSafeInteger(exp) || exp < 0) {
      throw new InvalidArgumentError(`expiresAtMs must be a safe integer >= 0, got ${exp}`);
    }
    this.kinds.push(exp > 0 ? EntryKind.putWithExpiry : EntryKind.put);
    this.keys.push(key);
    this.values.push(value);
    this.versions.push(version);
    this.expiries.push(exp);
    this.#byteSize += key.length + value.length + 24;
    return this;
  }

  /** Adds a delete (a tombstone). */
  delete(key: Uint8Array, opts?: DeleteOptions): this {
    checkKey(key);
    const version = checkVersion(opts?.version);
    this.kinds.push(EntryKind.delete);
    this.keys.push(key);
    this.values.push(emptyBytes);
    this.versions.push(version);
    this.expiries.push(0);
    this.#byteSize += key.length + 16;
    return this;
  }

  /** Number of ops. */
  get count(): number {
    return this.kinds.length;
  }

  /** Approximate encoded size (for memtable accounting and group-commit caps). */
  get byteSize(): number {
    return this.#byteSize;
  }

  /** True when some op needs a version from the engine. */
  get needsVersion(): boolean {
    for (const v of this.versions) if (v === 0) return true;
    return false;
  }

  /** Largest explicit version in the batch (0 when none). */
  get maxExplicitVersion(): number {
    let m = 0;
    for (const v of this.versions) if (v > m) m = v;
    return m;
  }
}

function uvarintLen(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function putUvarint(out: Uint8Array, at: number, v: number): number {
  while (v >= 0x80) {
    out[at++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  out[at++] = v;
  return at;
}

/** Size of the WAL payload for `batch`. `assigned` replaces versions of 0. */
export function batchPayloadLength(
  batch: WriteBatch,
  assigned: number,
  appliedIndex: number,
): number {
  let n = 1 + uvarintLen(appliedIndex + 1) + uvarintLen(batch.count);
  for (let i = 0; i < batch.count; i++) {
    const kind = batch.kinds[i];
    const key = batch.keys[i];
    n += 1 + uvarintLen(batch.versions[i] || assigned) + uvarintLen(key.length) + key.length;
    if (kind === EntryKind.putWithExpiry) n += uvarintLen(batch.expiries[i]);
    if (kind !== EntryKind.delete) n += uvarintLen(batch.values[i].length) + batch.values[i].length;
  }
  return n;
}

/**
 * Writes the WAL payload of `batch` at `out[at]`; returns the end offset.
 * When `positions` is given, pushes each op's key offset and value offset
 * (so the caller can keep views of the logged bytes instead of copies).
 * Requires: `out` has `batchPayloadLength(...)` bytes free at `at`; appliedIndex >= -1.
 */
export function writeBatchPayload(
  out: Uint8Array,
  at: number,
  batch: WriteBatch,
  assigned: number,
  appliedIndex: number,
  positions?: number[],
): number {
  assert(batch.count > 0, "an empty batch is never logged");
  out[at++] = PayloadType.writeBatch;
  at = putUvarint(out, at, appliedIndex + 1);
  at = putUvarint(out, at, batch.count);
  for (let i = 0; i < batch.count; i++) {
    const kind = batch.kinds[i];
    const key = batch.keys[i];
    out[at++] = kind;
    at = putUvarint(out, at, batch.versions[i] || assigned);
    at = putUvarint(out, at, key.length);
    out.set(key, at);
    positions?.push(at);
    at += key.length;
    if (kind === EntryKind.putWithExpiry) at = putUvarint(out, at, batch.expiries[i]);
    if (kind !== EntryKind.delete) {
      const v = batch.values[i];
      at = putUvarint(out, at, v.length);
      out.set(v, at);
      positions?.push(at);
      at += v.length;
    } else {
      positions?.push(at);
    }
  }
  return at;
}

/** One op decoded from a WAL record (versions are final). */
export interface DecodedOp {
  kind: EntryKindValue;
  key: Uint8Array;
  version: number;
  value: Uint8Array;
  expiresAtMs: number;
}

/** A WAL record decoded back: its ops and the applied index it carried (-1 = none). */
export interface DecodedBatch {
  ops: DecodedOp[];
  appliedIndex: number;
}

/**
 * Decodes a WAL payload. A malformed payload (its CRC matched, so the bug or
 * damage is real) raises CorruptionError at `file`/`offset`.
 */
export function decodeBatchPayload(
  payload: Uint8Array,
  file: string,
  offset: number,
): DecodedBatch {
  let at = 0;
  const fail = (why: string): never => {
    throw new CorruptionError(file, offset, `bad write batch: ${why}`);
  };
  const uvarint = (): number => {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (at >= payload.length) fail("truncated varint");
      const b = payload[at++];
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return result;
      scale *= 128;
    }
    return fail("varint too long");
  };
  const bytes = (n: number): Uint8Array => {
    if (n < 0 || at + n > payload.length) fail("truncated bytes");
    const b = payload.subarray(at, at + n);
    at += n;
    return b;
  };
  if (payload[at++] !== PayloadType.writeBatch) fail(`unknown payload type ${payload[0]}`);
  const appliedIndex = uvarint() - 1;
  const count = uvarint();
  if (count < 1) fail("empty batch");
  const ops: DecodedOp[] = [];
  for (let i = 0; i < count; i++) {
    if (at >= payload.length) fail("truncated op");
    const kind = payload[at++] as EntryKindValue;
    if (kind !== EntryKind.put && kind !== EntryKind.delete && kind !== EntryKind.putWithExpiry) {
      fail(`unknown op kind ${kind}`);
    }
    const version = uvarint();
    const key = bytes(uvarint());
    const expiresAtMs = kind === EntryKind.putWithExpiry ? uvarint() : 0;
    const value = kind === EntryKind.delete ? emptyBytes : bytes(uvarint());
    ops.push({ kind, key, version, value, expiresAtMs });
  }
  if (at !== payload.length) fail("trailing bytes");
  return { ops, appliedIndex };
}
