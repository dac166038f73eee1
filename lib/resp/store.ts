/**
 * The data operations RESP commands need, on top of KVNode's public API.
 * Writes run on the leader through Raft; on a follower a write that the
 * node refuses with NotLeader is forwarded to the leader over the gRPC API
 * (KVClient), so a RESP client never sees a redirect. Two things KVNode does
 * not offer yet live here and should move into the node later: writes with
 * a millisecond expiry (KVNode.put takes whole seconds) and a multi-key
 * transaction (one Raft entry, used by MSET).
 *
 * Forwarding limits of this increment (the gRPC API lacks them): a
 * forwarded expiry is rounded up to whole seconds, and a transaction is not
 * forwarded (the caller gets NotLeaderError and answers -READONLY).
 *
 * @module
 */

import { KVClient } from "../client/kv_client.ts";
import { defaultRequestTimeoutMs, maxTtlSeconds } from "../common/limits.ts";
import { InvalidArgumentError, isKVError, KVError, NotLeaderError } from "../common/errors.ts";
import { CommandOp, encodeCommand, type TxnWrite } from "../node/command.ts";
import type { KVNode, ReadConsistency } from "../node/kv_node.ts";
import { checkUserKey, type KeyValue } from "../node/state_machine.ts";
import { validateKey, validateValue } from "../server/validation.ts";

/** How long a forwarded write may take (same as a local one). */
const forwardTimeoutMs = defaultRequestTimeoutMs;
/** How long a write on a node that knows no leader waits for an election to end. */
const leaderWaitMs = 2_000;

/** A key's state as the CAS loops of RESP commands see it. */
export type Current = KeyValue | undefined;

/** The node operations of the RESP front end, leader-local or forwarded. */
export class RespStore {
  #forwarder: KVClient | undefined;
  #forwarderEndpoints = "";

  constructor(readonly node: KVNode) {}

  /**
   * Reads a key at the latest revision (or at `version` for VGET). A read
   * that could not be confirmed (no leader during an election) is retried
   * until the deadline: reads are idempotent.
   */
  async get(key: Uint8Array, consistency: ReadConsistency, version = 0): Promise<Current> {
    const deadline = this.#deadline();
    while (true) {
      try {
        return (await this.node.get(key, { consistency, version })).kv;
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
    validateKey(key);
    checkUserKey(key);
    validateValue(value);
    validateExpiry(expiresAtMs, this.node.clock.wallMs());
    return await this.#write(
      async () => {
        if (!this.node.replica.isLeader) throw this.node.replica.notLeader();
        const data = encodeCommand({
          op: CommandOp.Put,
          timestampMs: this.node.clock.wallMs(),
          requestId: "",
          key,
          value,
          expiresAtMs,
          ifVersion,
        });
        return (await this.node.replica.propose(data, this.#deadline())).revision;
      },
      async () => {
        const ttlSecs = expiresAtMs === 0
          ? 0
          : Math.max(1, Math.ceil((expiresAtMs - this.node.clock.wallMs()) / 1000));
        const client = await this.#client();
        return (await client.put(key, value, { ttlSecs, ifVersion, timeoutMs: forwardTimeoutMs }))
          .version;
      },
    );
  }

  /** Deletes a key (optionally only at `ifVersion`); true when it existed. */
  delete(key: Uint8Array, ifVersion?: number): Promise<boolean> {
    return this.#write(
      async () => (await this.node.delete(key, { ifVersion })).deleted,
      async () => {
        const client = await this.#client();
        return (await client.delete(key, { ifVersion, timeoutMs: forwardTimeoutMs })).deleted;
      },
    );
  }

  /**
   * Runs a write locally on the leader, or through `forward` when this node
   * is not the leader (NotLeader means "not proposed", so nothing is
   * duplicated). A rejection that says the write was not applied (NoQuorum:
   * an election, a leadership transfer, a superseded entry) is retried
   * until the deadline. The synchronous part of `local` proposes, so
   * writes started back to back keep their order in the log.
   */
  async #write<T>(local: () => Promise<T>, forward: (() => Promise<T>) | undefined): Promise<T> {
    const deadline = this.#deadline();
    while (true) {
      try {
        return await local();
      } catch (e) {
        if (e instanceof NotLeaderError && forward) return await forward();
        if (!isKVError(e, "NoQuorum") || this.node.clock.nowMs() >= deadline) throw e;
      }
      await this.node.clock.sleep(this.node.config.tickMs);
    }
  }

  /** Applies every write in one Raft entry (all or nothing); leader only for now. */
  async txn(writes: TxnWrite[]): Promise<number> {
    for (const w of writes) {
      validateKey(w.key);
      checkUserKey(w.key);
      if (w.value !== undefined) validateValue(w.value);
    }
    return await this.#write(async () => {
      if (!this.node.replica.isLeader) throw this.node.replica.notLeader();
      const data = encodeCommand({
        op: CommandOp.Txn,
        timestampMs: this.node.clock.wallMs(),
        requestId: "",
        writes,
      });
      return (await this.node.replica.propose(data, this.#deadline())).revision;
    }, undefined);
  }

  #deadline(): number {
    return this.node.clock.nowMs() + defaultRequestTimeoutMs;
  }

  /**
   * A gRPC client over the other members (rebuilt when membership changes),
   * once a leader is known (waits a bounded time through an election).
   */
  async #client(): Promise<KVClient> {
    const deadline = this.node.clock.nowMs() + leaderWaitMs;
    const replica = this.node.replica;
    while (!replica.softState.leaderId && this.node.clock.nowMs() < deadline) {
      await this.node.clock.sleep(this.node.config.tickMs);
    }
    if (!replica.softState.leaderId) {
      throw new KVError("NoQuorum", "no leader is known yet; retry shortly");
    }
    const self = this.node.config.nodeId;
    const endpoints = [...replica.members.values()].filter((m) => m.id !== self).map((m) => m.addr);
    const key = endpoints.join(",");
    if (!this.#forwarder || key !== this.#forwarderEndpoints) {
      // The old client is dropped, not closed, and none idles out: a closing
      // HTTP/2 client can abort a Deno grpc-js server (KVClientOptions.neverIdle).
      // Membership changes are rare, so the leak is a connection per change.
      this.#forwarder = new KVClient({ endpoints, timeoutMs: forwardTimeoutMs, neverIdle: true });
      this.#forwarderEndpoints = key;
    }
    return this.#forwarder;
  }

  /** Forgets the forwarding client; its sockets close with the process (see #client). */
  close(): void {
    this.#forwarder = undefined;
  }
}

function validateExpiry(expiresAtMs: number, nowMs: number): void {
  if (!Number.isSafeInteger(expiresAtMs) || expiresAtMs < 0) {
    throw new InvalidArgumentError("invalid expire time");
  }
  if (expiresAtMs > nowMs + maxTtlSeconds * 1000) {
    throw new InvalidArgumentError(`expire time is more than ${maxTtlSeconds} seconds away`);
  }
}
