/**
 * Multi-key transactions (the KVStore Txn call, etcd's model): compare keys'
 * versions or values, then run the success operations if every comparison
 * holds and the failure operations if not, atomically.
 *
 * How a transaction runs (KVNode.txn): the leader reads every key the
 * transaction looks at, at one linearizable revision R, and plans it here:
 * which list runs, what each operation answers, and the writes. The writes
 * leave as one conditional Txn command (lib/node/command.ts) that requires
 * every key the outcome depends on (compared keys, read keys, deleted keys,
 * keys whose previous value is returned) to still have the version it had
 * at R. If one changed, the command is refused whole and the transaction
 * is planned again at a newer revision. So the outcome is the one the
 * transaction would have had at its commit revision: it is linearizable.
 *
 * An outcome that writes nothing needs no commit, except when the client
 * may send the transaction again with the same request id: an earlier
 * attempt may then still be on its way to a commit with another outcome,
 * so such an outcome is committed too, as its conditions alone. The log
 * orders the two, the first one applied wins, and the other is answered
 * from it: planned again just before its commit revision (MVCC history).
 *
 * Planning is pure (no I/O, no clock): the caller passes what it read and
 * the time, so it is tested deterministically.
 *
 * @module
 */

import { byteString, compareBytes, equalBytes } from "../common/bytes.ts";
import { InvalidArgumentError } from "../common/errors.ts";
import { maxRequestBytes, maxScanResponseBytes } from "../common/limits.ts";
import type { TxnWrite } from "./command.ts";
import type { KeyValue } from "./state_machine.ts";

/** Most comparisons plus operations (of both lists) one transaction holds. */
export const maxTxnOps = 1_000;

/** What a comparison looks at. */
export type CompareTarget = "version" | "value";

/** How a comparison relates the key's version or value to the operand. */
export type CompareResult = "equal" | "notEqual" | "greater" | "less";

/** One comparison: `target` of the key's latest state <result> the operand. */
export interface TxnCompare {
  key: Uint8Array;
  target: CompareTarget;
  result: CompareResult;
  /** The operand of a version comparison (0 = the key does not exist). */
  version: number;
  /** The operand of a value comparison. */
  value: Uint8Array;
}

/** One operation of a transaction. */
export type TxnOp =
  | { kind: "put"; key: Uint8Array; value: Uint8Array; ttlSecs: number; prevKv: boolean }
  | { kind: "delete"; key: Uint8Array; prevKv: boolean }
  | { kind: "get"; key: Uint8Array };

/** A transaction as the node receives it (validated by `validateTxn`). */
export interface TxnRequest {
  compares: TxnCompare[];
  success: TxnOp[];
  failure: TxnOp[];
}

/** What one operation answers. */
export type TxnOpResult =
  | { kind: "put"; version: number; prev?: KeyValue }
  | { kind: "delete"; version: number; deleted: boolean; prev?: KeyValue }
  | { kind: "get"; revision: number; kv?: KeyValue };

/** The answer to a transaction. */
export interface TxnOutcome {
  succeeded: boolean;
  results: TxnOpResult[];
  /** The revision of its write, or the revision it read at when it wrote nothing. */
  revision: number;
}

/** Reads a key's latest state at the planning revision (undefined: absent). */
export type TxnRead = (key: Uint8Array) => KeyValue | undefined;

/** A planned transaction: the outcome at the read revision and the write that commits it. */
export interface TxnPlan {
  succeeded: boolean;
  /** Whether the operations that run write anything (else only `writes`' conditions remain). */
  writesKeys: boolean;
  /**
   * The writes and conditions of the Txn command that commits the outcome:
   * the operations' puts and deletes, then a check-only condition for each
   * other key the outcome depends on.
   */
  writes: TxnWrite[];
  /** Builds the answer once the write committed at `revision` (or, with no writes, the read one). */
  outcome(revision: number): TxnOutcome;
}

/**
 * Checks a transaction against the limits and rules before anything is
 * read: key and value sizes (by `validateKey` and `validateValue`), TTLs,
 * at most `maxTxnOps` comparisons and operations, at most maxRequestBytes
 * of keys and values, and no key in two operations of one list (the order
 * of two writes of one key inside one revision would be meaningless).
 */
export function validateTxn(
  txn: TxnRequest,
  check: {
    key(key: Uint8Array): void;
    value(value: Uint8Array): void;
    ttlSecs(ttl: number): void;
  },
): void {
  const count = txn.compares.length + txn.success.length + txn.failure.length;
  if (count > maxTxnOps) {
    throw new InvalidArgumentError(
      `a transaction holds at most ${maxTxnOps} comparisons and operations, got ${count}`,
    );
  }
  let bytes = 0;
  for (const c of txn.compares) {
    check.key(c.key);
    if (c.target === "version" && (!Number.isSafeInteger(c.version) || c.version < 0)) {
      throw new InvalidArgumentError(`a compared version must be an integer >= 0`);
    }
    if (c.target === "value") check.value(c.value);
    bytes += c.key.length + (c.target === "value" ? c.value.length : 0);
  }
  for (const [name, ops] of [["success", txn.success], ["failure", txn.failure]] as const) {
    const keys = new Set<string>();
    for (const op of ops) {
      check.key(op.key);
      bytes += op.key.length;
      if (op.kind === "put") {
        check.value(op.value);
        check.ttlSecs(op.ttlSecs);
        bytes += op.value.length;
      }
      const k = byteString(op.key);
      if (keys.has(k)) {
        throw new InvalidArgumentError(
          `a key appears in two ${name} operations of one transaction: ${JSON.stringify(k)}`,
        );
      }
      keys.add(k);
    }
  }
  if (bytes > maxRequestBytes) {
    throw new InvalidArgumentError(
      `a transaction holds at most ${maxRequestBytes} bytes of keys and values, got ${bytes}`,
    );
  }
}

/**
 * Whether either list puts or deletes: a transaction that cannot write has no
 * attempt whose outcome another attempt must be ordered with.
 */
export function txnMayWrite(txn: TxnRequest): boolean {
  return txn.success.some((op) => op.kind !== "get") || txn.failure.some((op) => op.kind !== "get");
}

/** Every key `plan` may read: the compared keys and both lists' keys, each once. */
export function keysToRead(txn: TxnRequest): Uint8Array[] {
  const seen = new Map<string, Uint8Array>();
  for (const c of txn.compares) seen.set(byteString(c.key), c.key);
  for (const op of txn.success) seen.set(byteString(op.key), op.key);
  for (const op of txn.failure) seen.set(byteString(op.key), op.key);
  return [...seen.values()];
}

/** Whether comparison `c` holds for the key's state `kv` (undefined: absent). */
export function compareHolds(c: TxnCompare, kv: KeyValue | undefined): boolean {
  let order: number;
  if (c.target === "version") order = (kv?.version ?? 0) - c.version;
  else {
    // A value comparison needs a value: it fails on a missing key, whatever the operator.
    if (kv === undefined) return false;
    order = c.result === "equal" || c.result === "notEqual"
      ? (equalBytes(kv.value, c.value) ? 0 : 1)
      : compareBytes(kv.value, c.value);
  }
  switch (c.result) {
    case "equal":
      return order === 0;
    case "notEqual":
      return order !== 0;
    case "greater":
      return order > 0;
    case "less":
      return order < 0;
  }
}

/**
 * Plans `txn` against the state `read` returns (all at one revision) at
 * `nowMs` (for TTLs): which list runs, the write with its conditions, and
 * the answers. A put whose previous value is not asked for is blind: it
 * carries a condition only when its key is also compared. Refuses, before
 * anything is written, an answer of more than maxScanResponseBytes of values.
 */
export function planTxn(txn: TxnRequest, read: TxnRead, nowMs: number): TxnPlan {
  const succeeded = txn.compares.every((c) => compareHolds(c, read(c.key)));
  const ops = succeeded ? txn.success : txn.failure;
  // The version each key the outcome depends on must still have at commit.
  const conditions = new Map<string, { key: Uint8Array; version: number }>();
  const depend = (key: Uint8Array) => {
    conditions.set(byteString(key), { key, version: read(key)?.version ?? 0 });
  };
  for (const c of txn.compares) depend(c.key);
  for (const op of ops) {
    if (op.kind !== "put" || op.prevKv) depend(op.key);
  }
  const writes: TxnWrite[] = [];
  const written = new Set<string>();
  for (const op of ops) {
    if (op.kind === "get") continue;
    const k = byteString(op.key);
    written.add(k);
    const ifVersion = conditions.get(k)?.version;
    if (op.kind === "put") {
      const expiresAtMs = op.ttlSecs > 0 ? nowMs + op.ttlSecs * 1000 : 0;
      writes.push({ key: op.key, value: op.value, expiresAtMs, ifVersion });
    } else writes.push({ key: op.key, value: undefined, expiresAtMs: 0, ifVersion });
  }
  const writesKeys = writes.length > 0;
  for (const [k, c] of conditions) {
    if (written.has(k)) continue;
    writes.push({
      key: c.key,
      value: undefined,
      expiresAtMs: 0,
      ifVersion: c.version,
      checkOnly: true,
    });
  }
  // The answer is built whole: bound it like a Scan page (a thousand gets of 1 MiB values would
  // be a gigabyte).
  let answerBytes = 0;
  for (const op of ops) {
    const kv = op.kind === "get" || op.prevKv ? read(op.key) : undefined;
    if (kv) answerBytes += kv.key.length + kv.value.length;
  }
  if (answerBytes > maxScanResponseBytes) {
    throw new InvalidArgumentError(
      `the transaction's answer would hold ${answerBytes} bytes of keys and values, over the ` +
        `limit of ${maxScanResponseBytes} bytes; read the largest keys on their own`,
    );
  }
  return {
    succeeded,
    writesKeys,
    writes,
    outcome(revision: number): TxnOutcome {
      const results = ops.map((op): TxnOpResult => {
        const kv = op.kind === "put" && !op.prevKv ? undefined : read(op.key);
        switch (op.kind) {
          case "put":
            return { kind: "put", version: revision, prev: op.prevKv ? kv : undefined };
          case "delete":
            return {
              kind: "delete",
              version: revision,
              deleted: kv !== undefined,
              prev: op.prevKv ? kv : undefined,
            };
          case "get":
            return { kind: "get", revision, kv };
        }
      });
      return { succeeded, results, revision };
    },
  };
}
