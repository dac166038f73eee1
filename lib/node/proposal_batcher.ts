/**
 * Group commit for Raft proposals: client writes that arrive while earlier
 * proposals are still in flight wait, and leave together as one Batch
 * command — one Raft entry, one log write, one AppendEntries round and one
 * engine write for all of them, however many connections they came from.
 * The batch size adapts to load: with nothing in flight a write leaves on
 * the next microtask, alone; under load the queue fills while
 * `maxInflightBatches` batches are being committed.
 *
 * A batcher with batch ids (`nextBatchId`) stamps every batch with a fresh
 * request id, so its proposer may resend the same bytes after an unknown
 * outcome and the state machine applies the batch at most once; such a
 * batcher takes only unconditional writes, whose outcome a retry can report
 * from the dedupe record (lib/node/state_machine.ts). Without batch ids,
 * each command keeps its own request id and is deduplicated on its own.
 *
 * Groups keep a client's order: writes submitted inside one `group` call
 * (a pipelined run of one connection) always leave in the same batch, so
 * a batch that is dropped and retried can never let a later write of the
 * same run commit before an earlier one.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { KVError } from "../common/errors.ts";
import { maxPendingProposals } from "../common/limits.ts";
import {
  type BatchableCommand,
  type Command,
  CommandOp,
  encodeCommand,
  maxBatchCommands,
} from "./command.ts";
import type { ApplyResult } from "./state_machine.ts";

/** Batches committing at once; more writes wait and join the next batch. */
export const maxInflightBatches = 4;
/** Encoded bytes of commands one batch carries at most (a larger command goes alone). */
export const maxBatchBytes = 1 << 20;

/** How the batcher hands an encoded entry to Raft and learns its apply result. */
export interface BatcherOptions {
  /**
   * Proposes `data` (whose request id is `requestId`, "" for none) and
   * resolves with its apply result; may retry internally with the same bytes.
   */
  propose(data: Uint8Array, requestId: string, deadlineMs: number): Promise<ApplyResult>;
  /** A fresh request id per batch; absent = commands carry their own ids. */
  nextBatchId?: () => string;
  /** The proposer's clock (leader time is stamped into each batch). */
  wallMs(): number;
}

interface Queued {
  command: BatchableCommand;
  /** The `group` call it was submitted in; 0 = none. */
  group: number;
  bytes: number;
  deadlineMs: number;
  resolve: (r: ApplyResult) => void;
  reject: (e: unknown) => void;
}

/** Collects writes into Batch commands; see the module comment. */
export class ProposalBatcher {
  #queue: Queued[] = [];
  #inflight = 0;
  #scheduled = false;
  /** The open group's id while `group` runs its callback, else 0. */
  #openGroup = 0;
  /** Whether the open group's writes are let in (decided by its first one). */
  #groupAdmitted: boolean | undefined;
  #lastGroup = 0;
  readonly #opts: BatcherOptions;

  constructor(opts: BatcherOptions) {
    this.#opts = opts;
  }

  /** Writes waiting for a batch (for tests and stats). */
  get queued(): number {
    return this.#queue.length;
  }

  /**
   * Runs `submitAll`, which submits writes synchronously; all of them leave
   * in one batch, in order. The caller bounds the group (commands and
   * bytes) well below `maxBatchCommands` and `maxBatchBytes`.
   */
  group<T>(submitAll: () => T): T {
    assert(this.#openGroup === 0, "groups do not nest");
    this.#openGroup = ++this.#lastGroup;
    this.#groupAdmitted = undefined;
    try {
      return submitAll();
    } finally {
      this.#openGroup = 0;
    }
  }

  /**
   * Queues `command` and resolves with its own apply result (rejects with
   * its error, or with the batch's failure). The command's timestamp is
   * replaced by the batch's.
   */
  submit(command: BatchableCommand, deadlineMs: number): Promise<ApplyResult> {
    if (this.#opts.nextBatchId) {
      assert(isUnconditional(command), "a batch with an id takes only unconditional writes");
    }
    // A group is let in or turned away whole, as its first write is: refusing some of its
    // writes would apply the rest of what the client meant as one (a multi-key DEL). The
    // caller bounds a group, so it overshoots the limit by that much at most.
    let full = this.#queue.length >= maxPendingProposals;
    if (this.#openGroup !== 0) {
      this.#groupAdmitted ??= !full;
      full = !this.#groupAdmitted;
    }
    if (full) {
      return Promise.reject(
        new KVError(
          "NoQuorum",
          `too many writes waiting for a batch (limit ${maxPendingProposals}); retry later`,
        ),
      );
    }
    const bytes = approximateBytes(command);
    return new Promise((resolve, reject) => {
      this.#queue.push({ command, group: this.#openGroup, bytes, deadlineMs, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#inflight >= maxInflightBatches || this.#queue.length === 0) {
      return;
    }
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    const q = this.#queue;
    while (this.#inflight < maxInflightBatches && q.length > 0) {
      let n = 1;
      let bytes = q[0].bytes;
      // A group at the head leaves whole, whatever the limits (its submitter bounds it).
      while (n < q.length && q[0].group !== 0 && q[n].group === q[0].group) bytes += q[n++].bytes;
      while (n < q.length && n < maxBatchCommands && bytes + q[n].bytes <= maxBatchBytes) {
        bytes += q[n++].bytes;
      }
      // Never end a batch inside a group: the group waits for the next batch, whole.
      if (n < q.length && q[n].group !== 0) {
        while (q[n - 1].group === q[n].group) n--;
      }
      this.#send(q.splice(0, n));
    }
  }

  #send(items: Queued[]): void {
    const timestampMs = this.#opts.wallMs();
    const batchId = this.#opts.nextBatchId?.() ?? "";
    // The latest of the writes' deadlines: one client's short deadline must not time out the
    // writes batched with it (a caller whose own deadline passes meanwhile gives up on its own:
    // the gRPC layer ends that call, and its outcome is unknown either way).
    let deadlineMs = -Infinity;
    for (const it of items) deadlineMs = Math.max(deadlineMs, it.deadlineMs);
    let command: Command;
    if (items.length === 1) {
      const only = items[0].command;
      command = { ...only, timestampMs, requestId: batchId || only.requestId };
    } else {
      command = {
        op: CommandOp.Batch,
        timestampMs,
        requestId: batchId,
        commands: items.map((it) => it.command),
      };
    }
    const requestId = command.requestId;
    let data: Uint8Array;
    try {
      data = encodeCommand(command);
    } catch (e) {
      for (const it of items) it.reject(e);
      return;
    }
    this.#inflight++;
    this.#opts.propose(data, requestId, deadlineMs).then(
      (result) => {
        if (items.length === 1) {
          items[0].resolve(result);
          return;
        }
        const results = result.results;
        if (!results || results.length !== items.length) {
          const e = new KVError("Internal", "a batch came back without one result per write");
          for (const it of items) it.reject(e);
          return;
        }
        items.forEach((it, i) => {
          const r = results[i];
          if (r.error) it.reject(r.error);
          else it.resolve(r);
        });
      },
      (e) => {
        for (const it of items) it.reject(e);
      },
    ).finally(() => {
      this.#inflight--;
      this.#schedule();
    });
  }
}

/** True for writes whose outcome does not depend on the current state. */
export function isUnconditional(c: BatchableCommand): boolean {
  if (c.op === CommandOp.Txn) return c.writes.every((w) => w.ifVersion === undefined);
  return c.ifVersion === undefined;
}

function approximateBytes(c: BatchableCommand): number {
  switch (c.op) {
    case CommandOp.Put:
      return 32 + c.key.length + c.value.length;
    case CommandOp.Delete:
      return 32 + c.key.length;
    case CommandOp.Txn: {
      let n = 32;
      for (const w of c.writes) n += 16 + w.key.length + (w.value?.length ?? 0);
      return n;
    }
  }
}
