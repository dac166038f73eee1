/**
 * The data operations RESP commands need, on top of KVNode's public API.
 * Writes go through Raft from whichever node the client is connected to:
 * the leader proposes them, a follower relays them to the leader inside
 * Raft (Replica.proposeAnywhere) and answers once it has applied the entry
 * itself, so a RESP client never sees a redirect and every command,
 * millisecond expiries and multi-key transactions included, works on every
 * node. Relayed writes carry a request id, so a retry after an unknown
 * outcome is applied at most once.
 *
 * @module
 */

import { PeerRespAddrs } from "./peer_resp_addrs.ts";
import { KeyQueue } from "./key_queue.ts";
import { ScanCursors } from "./scan_cursor.ts";
import { defaultRequestTimeoutMs, maxRequestBytes, maxTtlSeconds } from "../common/limits.ts";
import { InvalidArgumentError, isKVError, TimeoutError } from "../common/errors.ts";
import {
  type BatchableCommand,
  type Command,
  CommandOp,
  encodeCommand,
  maxTxnWrites,
  type TxnWrite,
} from "../node/command.ts";
import { isUnconditional, ProposalBatcher } from "../node/proposal_batcher.ts";
import type { KVNode, PinnedRevision, ReadConsistency } from "../node/kv_node.ts";
import type { readNeedsIo } from "../storage/engine.ts";
import { checkUserKey, type KeyValue } from "../node/state_machine.ts";
import type { ApplyResult } from "../node/state_machine.ts";
import { validateKey, validateValue } from "../server/validation.ts";

/** How long one relay attempt waits for its entry before sending it again. */
const relayAttemptMs = 1_000;

/** A key's state as the CAS loops of RESP commands see it. */
export type Current = KeyValue | undefined;

/** The node operations of the RESP front end, leader-local or forwarded. */
export class RespStore {
  /** Request ids are `resp-<node>-<boot>-<seq>`: unique across restarts and nodes. */
  readonly #idPrefix: string;
  #nextId = 0;

  readonly #batcher: ProposalBatcher;
  /** Read-modify-write commands of this node, one at a time per key (see key_queue.ts). */
  readonly keyQueue = new KeyQueue();
  /** Where the other members serve RESP (ROLE, INFO replication). */
  readonly peerRespAddrs: PeerRespAddrs;
  /** The SCAN cursors this node handed out (shared by its connections). */
  readonly scanCursors = new ScanCursors();

  constructor(readonly node: KVNode) {
    this.#idPrefix = `resp-${node.config.nodeId}-${crypto.randomUUID().slice(0, 8)}-`;
    this.peerRespAddrs = new PeerRespAddrs(node);
    this.#batcher = new ProposalBatcher({
      propose: (data, requestId, deadline) => this.#propose(data, requestId, deadline),
      nextBatchId: () => this.#newRequestId(),
      wallMs: () => node.clock.wallMs(),
    });
  }

  /**
   * Runs `dispatchAll`, which starts writes synchronously: the unconditional
   * ones (the only ones pipelined runs contain) leave in one Raft entry, in
   * the order they were started, on a leader and a follower alike.
   */
  writeGroup<T>(dispatchAll: () => T): T {
    return this.#batcher.group(dispatchAll);
  }

  /**
   * Reads a key at the latest revision (or at `version` for VGET). A read
   * that could not be confirmed (no leader during an election) is retried
   * until the deadline: reads are idempotent.
   */
  get(key: Uint8Array, consistency: ReadConsistency, version = 0): Promise<Current> {
    if (neverStored(key)) return Promise.resolve(undefined);
    return this.#untilConfirmed(async () =>
      (await this.node.get(key, { consistency, version })).kv
    );
  }

  /**
   * A serializable read of the latest version without a promise when no
   * disk read is needed; `readNeedsIo` otherwise.
   */
  getNow(key: Uint8Array): Current | typeof readNeedsIo {
    return neverStored(key) ? undefined : this.node.getLocalNow(key);
  }

  /**
   * Reads every key at one revision (MGET): one read fence, then this
   * replica's state at the revision it pinned. Retried like `get`.
   */
  getMany(keys: Uint8Array[], consistency: ReadConsistency): Promise<Current[]> {
    return this.getManyPinned(keys, consistency).then((r) => r.kvs);
  }

  /** getMany, with the revision the keys were read at. */
  getManyPinned(
    keys: Uint8Array[],
    consistency: ReadConsistency,
  ): Promise<{ kvs: Current[]; revision: number }> {
    return this.#untilConfirmed(async () => {
      const pin = await this.node.pinRevision(consistency);
      try {
        const kvs = await Promise.all(keys.map(async (key) => {
          if (neverStored(key)) return undefined;
          const read = {
            version: pin.version,
            consistency: "serializable" as const,
            ttlAtMs: pin.ttlAtMs,
          };
          return (await this.node.get(key, read)).kv;
        }));
        return { kvs, revision: pin.version };
      } finally {
        pin.release();
      }
    });
  }

  /** Whether `key` was put at a revision in (after, upto] (KVNode.keyCreatedBetween). */
  keyCreatedBetween(key: Uint8Array, after: number, upto: number): Promise<boolean> {
    return neverStored(key)
      ? Promise.resolve(false)
      : this.node.keyCreatedBetween(key, after, upto);
  }

  /**
   * getNow for many keys (a pipeline of GETs), looked up together; false
   * when some key is invalid (read them one by one for its error).
   */
  getManyNow(keys: Uint8Array[], out: (Current | typeof readNeedsIo)[]): boolean {
    return this.node.getLocalManyNow(keys, out);
  }

  /**
   * A linearizable read fence, then this replica's state pinned at the
   * revision it guarantees (MULTI/EXEC reads at it); retried like `get`.
   * The caller releases the pin.
   */
  pinRevision(): Promise<PinnedRevision> {
    return this.#untilConfirmed(() => this.node.pinRevision("linearizable"));
  }

  /**
   * A linearizable read barrier (ReadIndex) for reads that then read this
   * replica's state; retried like `get` until the deadline.
   */
  readBarrier(): Promise<void> {
    return this.#untilConfirmed((deadline) => this.node.replica.readBarrier(deadline));
  }

  /**
   * Runs a read until it is not refused for want of a leader (no quorum, or
   * leadership moving during an election), at most until the deadline:
   * reads are idempotent. `read` gets that deadline.
   */
  async #untilConfirmed<T>(read: (deadline: number) => Promise<T>): Promise<T> {
    const deadline = this.requestDeadline();
    while (true) {
      try {
        return await read(deadline);
      } catch (e) {
        const retry = isKVError(e, "NoQuorum") || isKVError(e, "NotLeader");
        if (!retry || this.node.clock.nowMs() >= deadline) throw e;
      }
      await this.node.clock.sleep(this.node.config.tickMs);
    }
  }

  /**
   * Writes a key with an absolute expiry (0 = none) and an optional
   * compare-and-set version (0 = must be absent). Rejects with ConflictError
   * when the CAS fails.
   */
  async put(
    key: Uint8Array,
    value: Uint8Array,
    expiresAtMs: number,
    ifVersion?: number,
  ): Promise<number> {
    checkWrite(key, value, expiresAtMs, this.node.clock.wallMs());
    const r = await this.#submit({
      op: CommandOp.Put,
      timestampMs: 0,
      requestId: "",
      key,
      value,
      expiresAtMs,
      ifVersion,
    });
    return r.revision;
  }

  /** Deletes a key (optionally only at `ifVersion`); true when it existed. */
  async delete(key: Uint8Array, ifVersion?: number): Promise<boolean> {
    if (neverStored(key)) return false;
    checkWrite(key, undefined, 0, 0);
    const r = await this.#submit({
      op: CommandOp.Delete,
      timestampMs: 0,
      requestId: "",
      key,
      ifVersion,
    });
    return r.changed;
  }

  /**
   * Applies every write in one Raft entry (all or nothing); refused when
   * the writes (conditions included) are more or larger than one entry takes.
   */
  async txn(writes: TxnWrite[]): Promise<number> {
    const nowMs = this.node.clock.wallMs();
    let bytes = 0;
    for (const w of writes) {
      checkWrite(w.key, w.value, w.expiresAtMs, nowMs);
      bytes += w.key.length + (w.value?.length ?? 0) + 24;
    }
    if (writes.length > maxTxnWrites) {
      throw new InvalidArgumentError(
        `a transaction holds at most ${maxTxnWrites} writes and conditions, got ${writes.length}`,
      );
    }
    if (bytes > maxRequestBytes) {
      throw new InvalidArgumentError(
        `a transaction holds at most ${maxRequestBytes} bytes of keys and values, got ${bytes}`,
      );
    }
    const r = await this.#submit({
      op: CommandOp.Txn,
      timestampMs: 0,
      requestId: "",
      writes,
      conflictIsFinal: true,
    });
    return r.revision;
  }

  /**
   * Unconditional writes join the batcher (one Raft entry for all writes
   * that arrive together); compare-and-set writes go alone, with their own id.
   */
  #submit(command: BatchableCommand): Promise<ApplyResult> {
    if (isUnconditional(command)) return this.#batcher.submit(command, this.requestDeadline());
    return this.#write((requestId, timestampMs) => ({ ...command, requestId, timestampMs }));
  }

  /**
   * Proposes the command from this node and waits for its apply result.
   * Rejections that mean "not applied" (no leader yet, an election, an
   * overloaded or superseded leader) and relay timeouts (outcome unknown,
   * but the request id makes a second apply a no-op) are retried with the
   * same request id until the deadline. The first attempt proposes
   * synchronously, so writes started back to back keep their order in the
   * log when this node leads.
   */
  #write(build: (requestId: string, timestampMs: number) => Command): Promise<ApplyResult> {
    const requestId = this.#newRequestId();
    // Time decisions at apply use this stamp on every replica (lib/node/command.ts).
    const data = encodeCommand(build(requestId, this.node.clock.wallMs()));
    return this.#propose(data, requestId, this.requestDeadline());
  }

  #newRequestId(): string {
    return this.#idPrefix + this.#nextId++;
  }

  /** Proposes encoded bytes carrying `requestId`, retrying as `#write` describes. */
  async #propose(data: Uint8Array, requestId: string, deadline: number): Promise<ApplyResult> {
    const replica = this.node.replica;
    // Set once an attempt timed out: it may have reached the log and may still apply.
    let outcomeUnknown = false;
    while (true) {
      const attemptDeadline = Math.min(deadline, this.node.clock.nowMs() + relayAttemptMs);
      try {
        return await replica.proposeAnywhere(
          data,
          requestId,
          replica.isLeader ? deadline : attemptDeadline,
        );
      } catch (e) {
        const retry = isKVError(e, "NoQuorum") || isKVError(e, "NotLeader") ||
          isKVError(e, "Timeout");
        if (isKVError(e, "Timeout")) outcomeUnknown = true;
        if (!retry || this.node.clock.nowMs() >= deadline) {
          // A later attempt's "no leader" or "not applied" says nothing of an earlier one that
          // may still commit: a client told CLUSTERDOWN would take the write for not done. An
          // answer from the apply (a Conflict: every copy of the write gets the one recorded
          // outcome) is final, and passes through.
          if (outcomeUnknown && retry && !isKVError(e, "Timeout")) {
            throw new TimeoutError(
              `the write's outcome is unknown: an attempt may still apply (last: ${
                (e as Error).message
              })`,
            );
          }
          throw e;
        }
      }
      await this.node.clock.sleep(this.node.config.tickMs);
    }
  }

  /** When a command starting now gives up (monotonic ms). */
  requestDeadline(): number {
    return this.node.clock.nowMs() + defaultRequestTimeoutMs;
  }

  /** Closes the connections used to ask peers for their RESP addresses. */
  close(): void {
    this.peerRespAddrs.close();
  }
}

/**
 * The checks a write of `key` passes before it is proposed: the key's size
 * and range, and for a put the value's size and the expiry.
 */
export function checkWrite(
  key: Uint8Array,
  value: Uint8Array | undefined,
  expiresAtMs: number,
  nowMs: number,
): void {
  validateKey(key);
  checkUserKey(key);
  if (value === undefined) return;
  validateValue(value);
  validateExpiry(expiresAtMs, nowMs);
}

function validateExpiry(expiresAtMs: number, nowMs: number): void {
  if (!Number.isSafeInteger(expiresAtMs) || expiresAtMs < 0) {
    throw new InvalidArgumentError("invalid expire time");
  }
  if (expiresAtMs > nowMs + maxTtlSeconds * 1000) {
    throw new InvalidArgumentError(`expire time is more than ${maxTtlSeconds} seconds away`);
  }
}

/**
 * Keys no write can create: the empty key and keys starting with byte 0x00
 * (the system's). Reads answer them as absent, as Redis answers a key
 * nobody set, instead of failing a whole MGET; writes of them are refused
 * with the reason.
 */
export function neverStored(key: Uint8Array): boolean {
  return key.length === 0 || key[0] === 0;
}
