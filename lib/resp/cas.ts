/**
 * Read-modify-write for RESP commands (INCR, APPEND, SET NX/XX/GET, GETSET,
 * EXPIRE, ...) by optimistic compare-and-set: read the key with a
 * linearizable read, decide, write with `ifVersion` = the version read (0 =
 * absent). The state machine checks the version at apply time, so two
 * racing writers cannot both win; the loser re-reads and decides again,
 * after a short random pause, until the command's deadline. A node runs
 * its own read-modify-writes of one key one at a time (KeyQueue), so they
 * never race each other; only another node's, or a plain write landing
 * between the read and the write, can make one go again.
 *
 * @module
 */

import { isKVError } from "../common/errors.ts";
import type { TxnWrite } from "../node/command.ts";
import { ReplyError } from "./command_table.ts";
import type { Current, RespStore } from "./store.ts";

/** What a decision does to the key: nothing, a put (keeping or setting expiry), or a delete. */
export type CasAction =
  | { kind: "none" }
  | { kind: "put"; value: Uint8Array; expiresAtMs: number }
  | { kind: "delete" };

/** A decision: the action and the reply value to hand back once it is applied. */
export interface CasDecision<T> {
  action: CasAction;
  result: T;
}

/** Runs `decide` against the key's current state until its action is applied. */
export function readModifyWrite<T>(
  store: RespStore,
  key: Uint8Array,
  decide: (current: Current) => CasDecision<T>,
): Promise<T> {
  // The deadline runs from the command's arrival: time spent queued behind others counts.
  const deadline = store.requestDeadline();
  return store.keyQueue.run(key, () => compareAndSetLoop(store, key, decide, deadline));
}

async function compareAndSetLoop<T>(
  store: RespStore,
  key: Uint8Array,
  decide: (current: Current) => CasDecision<T>,
  deadline: number,
): Promise<T> {
  if (store.node.clock.nowMs() >= deadline) {
    throw new ReplyError("ERR timed out waiting behind other commands on this key; retry");
  }
  return await untilNoConflict(store, deadline, "key", async () => {
    const current = await store.get(key, "linearizable");
    const d = decide(current);
    const ifVersion = current?.version ?? 0;
    if (d.action.kind === "put") {
      await store.put(key, d.action.value, d.action.expiresAtMs, ifVersion);
    } else if (d.action.kind === "delete") {
      await store.delete(key, ifVersion);
    }
    return d.result;
  });
}

/**
 * Runs `attempt` (read, decide, write) again each time its write is
 * refused with Conflict, after a random pause, until the deadline; `what`
 * names what kept changing in the error then.
 */
export async function untilNoConflict<T>(
  store: RespStore,
  deadline: number,
  what: string,
  attempt: () => Promise<T>,
): Promise<T> {
  const clock = store.node.clock;
  for (let n = 1;; n++) {
    try {
      return await attempt();
    } catch (e) {
      if (!isKVError(e, "Conflict")) throw e;
    }
    if (clock.nowMs() >= deadline) {
      throw new ReplyError(
        `ERR the ${what} kept changing under this command (${n} attempts); retry`,
      );
    }
    // Writers of other nodes that lost together must not collide again in step.
    await clock.sleep(Math.random() * Math.min(n, maxCasPauseMs));
  }
}

/**
 * A decision about several keys: writes applied together as one
 * transaction (each may carry the `ifVersion` its key was read at; none:
 * nothing to write), and the reply value.
 */
export interface MultiKeyDecision<T> {
  writes: TxnWrite[];
  result: T;
}

/**
 * `readModifyWrite` for commands of several keys (RENAME, RENAMENX,
 * MSETNX): reads the keys at one revision, and applies the decision's
 * writes as one transaction, all or nothing; when a condition fails (a key
 * changed since it was read) it reads and decides again, until the
 * deadline. These do not go through the key queue: with several keys, two
 * commands could queue in opposite orders.
 */
export function readModifyWriteKeys<T>(
  store: RespStore,
  keys: Uint8Array[],
  decide: (current: Current[]) => MultiKeyDecision<T>,
): Promise<T> {
  return untilNoConflict(store, store.requestDeadline(), "keys", async () => {
    const d = decide(await store.getMany(keys, "linearizable"));
    if (d.writes.length > 0) await store.txn(d.writes);
    return d.result;
  });
}

/** Longest pause between two attempts, in ms. */
const maxCasPauseMs = 10;
