/**
 * Commands the replicated state machine applies, and their byte encoding
 * inside a Raft entry (docs/FORMATS.md, "State machine command"). Every
 * decision that depends on time (TTL expiry, request-id retention) uses the
 * `timestampMs` stamped into the command (by its proposer, then raised to
 * the leader's clock as the leader appends it: withTimestampAtLeast), never the
 * applying replica's clock, so every replica reaches the same state.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { InvalidArgumentError } from "../common/errors.ts";
import { ByteReader, ByteWriter, DecodeError } from "../common/bytes.ts";
import { maxKeyBytes, maxValueBytes, maxWalRecordBytes } from "../common/limits.ts";

/** Command encoding version; bump only with a migration path. */
export const commandFormatVersion = 1;

/** Command opcodes on disk. Never renumber. */
export const enum CommandOp {
  Put = 1,
  Delete = 2,
  Txn = 3,
  ExpireKey = 4,
  CompactHistory = 5,
  Batch = 6,
}

/** Optional trailing byte of a Txn: its failed conditions are recorded as its outcome. */
const txnFlagConflictIsFinal = 1;

/** One write inside a transaction (MSET and friends). */
export interface TxnWrite {
  key: Uint8Array;
  /** undefined = delete */
  value: Uint8Array | undefined;
  expiresAtMs: number;
  /**
   * The version the key must hold when the transaction applies (0 = must
   * be absent); if any write's does not match, none of them is applied.
   */
  ifVersion?: number;
  /**
   * Only the condition, nothing written (`value` is ignored): a key the
   * transaction read but does not change (RESP MULTI/EXEC, WATCH).
   */
  checkOnly?: boolean;
}

/** A state-machine command as the apply loop sees it. */
export type Command =
  | {
    op: CommandOp.Put;
    timestampMs: number;
    requestId: string;
    key: Uint8Array;
    value: Uint8Array;
    /** Absolute expiry in Unix ms; 0 = none. */
    expiresAtMs: number;
    /** Compare-and-set: the key's current version must equal this (0 = absent). */
    ifVersion: number | undefined;
    /** The proposer wants the previous value back (otherwise apply may skip reading it). */
    wantPrev?: boolean;
  }
  | {
    op: CommandOp.Delete;
    timestampMs: number;
    requestId: string;
    key: Uint8Array;
    ifVersion: number | undefined;
  }
  | {
    op: CommandOp.Txn;
    timestampMs: number;
    requestId: string;
    writes: TxnWrite[];
    /**
     * A failed condition is this id's outcome for good: its dedupe record
     * answers every copy the same way (a relayed write is sent again when its
     * answer is late). Unset for KVNode.txn, which re-plans a transaction
     * whose conditions failed and proposes it again under the same id.
     */
    conflictIsFinal?: boolean;
  }
  | {
    /** The leader saw `key` expire at `version`; delete it unless it was rewritten since. */
    op: CommandOp.ExpireKey;
    timestampMs: number;
    key: Uint8Array;
    version: number;
  }
  | { op: CommandOp.CompactHistory; timestampMs: number; revision: number }
  | {
    /**
     * Writes proposed together, applied in order as one Raft entry, each with
     * its own revision and result. Time decisions use the batch's timestamp.
     * A batch with a request id holds only unconditional writes (see
     * lib/node/proposal_batcher.ts) and is deduplicated as a whole.
     */
    op: CommandOp.Batch;
    timestampMs: number;
    requestId: string;
    commands: BatchableCommand[];
  };

/** The commands a Batch may carry: the client writes. */
export type BatchableCommand = Extract<
  Command,
  { op: CommandOp.Put | CommandOp.Delete | CommandOp.Txn }
>;

/** Most commands one Batch carries. */
export const maxBatchCommands = 4_096;

/** Largest encoded command inside a batch a decoder accepts (a transaction can be large). */
const maxBatchEntryBytes = maxWalRecordBytes;

const flagHasIfVersion = 1;
/** Put only: return the previous value. */
const flagWantPrev = 2;
export const maxTxnWrites = 10_000;

/**
 * Bits of a transaction write's kind byte: a put (else a delete), an
 * ifVersion follows, only a condition (always with the conditional bit).
 */
const txnWritePut = 1;
const txnWriteConditional = 2;
const txnWriteCheckOnly = 4;

function putOptionalVersion(w: ByteWriter, v: number | undefined, extraFlags = 0): void {
  w.putU8((v === undefined ? 0 : flagHasIfVersion) | extraFlags);
  if (v !== undefined) w.putU64Number(v);
}

/** Reads the flags byte and optional version; `allowed` are the flags this op may carry. */
function readOptionalVersion(
  r: ByteReader,
  allowed = flagHasIfVersion,
): { ifVersion: number | undefined; flags: number } {
  const flags = r.u8();
  if (flags & ~allowed) throw new DecodeError(`unknown flags ${flags}`, r.offset - 1);
  return { ifVersion: flags & flagHasIfVersion ? r.u64Number() : undefined, flags };
}

/** Encodes a command for a Raft entry's data (its own allocation: the entry keeps it). */
export function encodeCommand(c: Command, w = new ByteWriter(64)): Uint8Array {
  writeCommand(c, w);
  return w.finish();
}

/** Writes `c` into `w` from its start. */
function writeCommand(c: Command, w: ByteWriter): void {
  w.reset();
  w.putU8(commandFormatVersion).putU8(c.op).putU64Number(c.timestampMs);
  switch (c.op) {
    case CommandOp.Put:
      w.putString(c.requestId).putLengthPrefixed(c.key).putLengthPrefixed(c.value);
      w.putU64Number(c.expiresAtMs);
      putOptionalVersion(w, c.ifVersion, c.wantPrev ? flagWantPrev : 0);
      break;
    case CommandOp.Delete:
      w.putString(c.requestId).putLengthPrefixed(c.key);
      putOptionalVersion(w, c.ifVersion);
      break;
    case CommandOp.Txn:
      if (c.writes.length > maxTxnWrites) {
        // The decoder refuses it: such an entry, once committed, could never be applied.
        throw new InvalidArgumentError(
          `a transaction holds at most ${maxTxnWrites} writes and conditions, got ${c.writes.length}`,
        );
      }
      w.putString(c.requestId).putUvarint(c.writes.length);
      for (const op of c.writes) {
        if (op.checkOnly) {
          const ifVersion = op.ifVersion;
          assert(ifVersion !== undefined, "a check-only transaction write has a condition");
          w.putU8(txnWriteCheckOnly | txnWriteConditional).putLengthPrefixed(op.key);
          w.putU64Number(ifVersion);
          continue;
        }
        const conditional = op.ifVersion !== undefined ? txnWriteConditional : 0;
        w.putU8((op.value === undefined ? 0 : txnWritePut) | conditional).putLengthPrefixed(op.key);
        if (op.value !== undefined) w.putLengthPrefixed(op.value).putU64Number(op.expiresAtMs);
        if (op.ifVersion !== undefined) w.putU64Number(op.ifVersion);
      }
      if (c.conflictIsFinal) w.putU8(txnFlagConflictIsFinal);
      break;
    case CommandOp.ExpireKey:
      w.putLengthPrefixed(c.key).putU64Number(c.version);
      break;
    case CommandOp.CompactHistory:
      w.putU64Number(c.revision);
      break;
    case CommandOp.Batch: {
      w.putString(c.requestId).putUvarint(c.commands.length);
      const inner = new ByteWriter(64);
      for (const sub of c.commands) {
        writeCommand(sub, inner);
        w.putLengthPrefixed(inner.view()); // copied here, so a view will do
      }
      break;
    }
  }
}

/**
 * An encoded command with its timestamp raised to `nowMs`: a copy when that
 * changes it, else `data` itself (a later stamp is kept; bytes that are not
 * a command are returned as they are). Never rewrites `data`: its proposer
 * may propose it again, and an earlier copy may already be a log entry. The
 * leader does this as it appends an entry: a write stamped by its proposer,
 * then retried or delayed, is judged at the time it entered the log, after
 * every read the leader served before (see RaftConfig.stampProposal).
 */
export function withTimestampAtLeast(data: Uint8Array, nowMs: number): Uint8Array {
  if (data.length < 10 || data[0] !== commandFormatVersion) return data;
  const at = new DataView(data.buffer, data.byteOffset + 2, 8);
  const stamped = at.getUint32(0) * 2 ** 32 + at.getUint32(4);
  if (nowMs <= stamped || !Number.isSafeInteger(nowMs)) return data;
  const copy = data.slice();
  const view = new DataView(copy.buffer, 2, 8);
  view.setUint32(0, Math.floor(nowMs / 2 ** 32));
  view.setUint32(4, nowMs >>> 0);
  return copy;
}

/**
 * The request id of an encoded Put, Delete or Txn ("" for other commands or
 * bytes that do not parse), read without decoding the rest: a replica that
 * relayed a write to the leader spots its entry by it when applying.
 */
export function requestIdOf(data: Uint8Array): string {
  if (data.length < 11 || data[0] !== commandFormatVersion) return "";
  const op = data[1];
  if (
    op !== CommandOp.Put && op !== CommandOp.Delete && op !== CommandOp.Txn &&
    op !== CommandOp.Batch
  ) return "";
  try {
    const r = new ByteReader(data.subarray(10));
    return r.string(256);
  } catch {
    return "";
  }
}

/** Decodes a command; raises DecodeError on anything malformed. */
export function decodeCommand(data: Uint8Array): Command {
  const r = new ByteReader(data);
  const c = readCommand(r);
  r.expectEnd("command");
  return c;
}

/**
 * Reads one command at the reader's offset. A batch's commands are read in
 * place by the same reader: a reader (and its DataView) and a view per
 * command were a tenth of a follower's apply.
 */
/** Reads one command that ends at `end` (the whole buffer, or a batch's length prefix). */
function readCommand(r: ByteReader, end = r.bytes.length): Command {
  const version = r.u8();
  if (version !== commandFormatVersion) {
    throw new DecodeError(`unknown command format ${version}`, r.offset - 1);
  }
  const op = r.u8();
  const timestampMs = r.u64Number();
  let c: Command;
  switch (op) {
    case CommandOp.Put: {
      const requestId = r.string(256);
      const key = r.lengthPrefixed(maxKeyBytes);
      const value = r.lengthPrefixed(maxValueBytes);
      const expiresAtMs = r.u64Number();
      const { ifVersion, flags } = readOptionalVersion(r, flagHasIfVersion | flagWantPrev);
      c = { op, timestampMs, requestId, key, value, expiresAtMs, ifVersion };
      if (flags & flagWantPrev) c.wantPrev = true;
      break;
    }
    case CommandOp.Delete: {
      const requestId = r.string(256);
      const key = r.lengthPrefixed(maxKeyBytes);
      c = { op, timestampMs, requestId, key, ifVersion: readOptionalVersion(r).ifVersion };
      break;
    }
    case CommandOp.Txn: {
      const requestId = r.string(256);
      const n = r.uvarint();
      if (n > maxTxnWrites) {
        throw new DecodeError(`transaction of ${n} writes exceeds ${maxTxnWrites}`, r.offset);
      }
      const writes: TxnWrite[] = [];
      for (let i = 0; i < n; i++) {
        const kind = r.u8();
        if (kind === (txnWriteCheckOnly | txnWriteConditional)) {
          const key = r.lengthPrefixed(maxKeyBytes);
          const ifVersion = r.u64Number();
          writes.push({ key, value: undefined, expiresAtMs: 0, ifVersion, checkOnly: true });
          continue;
        }
        if ((kind & ~(txnWritePut | txnWriteConditional)) !== 0) {
          throw new DecodeError(`unknown transaction write kind ${kind}`, r.offset - 1);
        }
        const key = r.lengthPrefixed(maxKeyBytes);
        const write: TxnWrite = (kind & txnWritePut) !== 0
          ? { key, value: r.lengthPrefixed(maxValueBytes), expiresAtMs: r.u64Number() }
          : { key, value: undefined, expiresAtMs: 0 };
        if ((kind & txnWriteConditional) !== 0) write.ifVersion = r.u64Number();
        writes.push(write);
      }
      c = { op, timestampMs, requestId, writes };
      if (r.offset < end) {
        const flags = r.u8();
        if (flags !== txnFlagConflictIsFinal) {
          throw new DecodeError(`unknown transaction flags ${flags}`, r.offset - 1);
        }
        c.conflictIsFinal = true;
      }
      break;
    }
    case CommandOp.ExpireKey:
      c = { op, timestampMs, key: r.lengthPrefixed(maxKeyBytes), version: r.u64Number() };
      break;
    case CommandOp.CompactHistory:
      c = { op, timestampMs, revision: r.u64Number() };
      break;
    case CommandOp.Batch: {
      const requestId = r.string(256);
      const n = r.uvarint();
      if (n > maxBatchCommands) {
        throw new DecodeError(`batch of ${n} commands exceeds ${maxBatchCommands}`, r.offset);
      }
      const commands: BatchableCommand[] = [];
      for (let i = 0; i < n; i++) {
        const lengthAt = r.offset;
        const length = r.uvarint();
        if (length > maxBatchEntryBytes || length > r.remaining) {
          throw new DecodeError(`batch command of ${length} bytes`, lengthAt);
        }
        const at = r.offset;
        // The op is checked before the command is read: a batch inside a batch (inside a
        // batch...) is refused at once instead of recursing until the stack runs out.
        const subOp = length >= 2 ? r.bytes[at + 1] : -1;
        if (subOp !== CommandOp.Put && subOp !== CommandOp.Delete && subOp !== CommandOp.Txn) {
          throw new DecodeError(`a batch may not carry command op ${subOp}`, at);
        }
        const sub = readCommand(r, at + length) as BatchableCommand;
        if (r.offset !== at + length) {
          throw new DecodeError(`batch command of ${length} bytes read as ${r.offset - at}`, at);
        }
        commands.push(sub);
      }
      c = { op, timestampMs, requestId, commands };
      break;
    }
    default:
      throw new DecodeError(`unknown command op ${op}`, r.offset - 9);
  }
  return c;
}
