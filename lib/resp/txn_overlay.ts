/**
 * What a MULTI/EXEC transaction's commands run against: the store as of one
 * pinned revision, with the transaction's own writes laid over it. The
 * commands' handlers are the ordinary ones (they see this in place of the
 * RespStore); nothing reaches Raft until EXEC has run them all. Then every
 * write becomes one Txn entry whose writes carry, as `ifVersion`, the
 * version each key had at the pinned revision if the transaction read it,
 * and every key read but not written becomes a check-only condition. So the
 * whole transaction applies as if run alone at the moment it commits, or
 * not at all (the conditions fail and EXEC runs it again on newer state):
 * optimistic concurrency, serializable. Keys only written blind (SET, DEL
 * of a key it never read) carry no condition, as in Redis.
 *
 * @module
 */

import { ConflictError } from "../common/errors.ts";
import type { TxnWrite } from "../node/command.ts";
import type { KeyValue } from "../node/state_machine.ts";
import { readNeedsIo } from "../storage/engine.ts";
import { byteString } from "../common/bytes.ts";
import { checkWrite, type Current, neverStored, type RespStore } from "./store.ts";
import { ReplyError } from "./command_table.ts";
import { KeyQueue } from "./key_queue.ts";

/** One key the transaction touched. */
interface Touched {
  key: Uint8Array;
  /** Its state as the transaction's commands now see it. */
  current: Current;
  /** Its version at the pinned revision (0: absent) once read; undefined: only written. */
  readVersion: number | undefined;
  written: boolean;
}

/**
 * The RespStore members the data commands allowed inside MULTI use; the
 * overlay provides exactly these (commands_multi.ts keeps the list of
 * those commands).
 */
export type TransactionalStore = Pick<
  RespStore,
  | "node"
  | "get"
  | "getNow"
  | "getMany"
  | "put"
  | "delete"
  | "txn"
  | "writeGroup"
  | "keyQueue"
  | "requestDeadline"
>;

/** A transaction's view of the store (see the module comment). */
export class TxnOverlay implements TransactionalStore {
  readonly #base: RespStore;
  readonly #version: number;
  /** The time reads at the pinned revision judge TTLs by (PinnedRevision.ttlAtMs). */
  readonly #ttlAtMs: number;
  readonly #touched = new Map<string, Touched>();
  /** Versions of the transaction's own writes: above every real one at the pinned revision. */
  #nextVersion: number;

  constructor(base: RespStore, pinnedVersion: number, ttlAtMs: number) {
    this.#base = base;
    this.#version = pinnedVersion;
    this.#ttlAtMs = ttlAtMs;
    this.#nextVersion = pinnedVersion + 1;
  }

  get node(): RespStore["node"] {
    return this.#base.node;
  }

  /** Its own: the transaction's commands run one after another, so nothing waits in it. */
  readonly keyQueue = new KeyQueue();

  requestDeadline(): number {
    return this.#base.requestDeadline();
  }

  writeGroup<T>(dispatchAll: () => T): T {
    return dispatchAll();
  }

  /** Never answered synchronously: every read goes through `get`, which records it. */
  getNow(_key: Uint8Array): Current | typeof readNeedsIo {
    return readNeedsIo;
  }

  get(key: Uint8Array, _consistency?: unknown, version = 0): Promise<Current> {
    if (version !== 0) throw new ReplyError("ERR VGET is not allowed inside MULTI");
    return this.#serial(async () => (await this.#touch(key)).current);
  }

  getMany(keys: Uint8Array[]): Promise<Current[]> {
    return this.#serial(async () => {
      const out: Current[] = [];
      for (const key of keys) out.push((await this.#touch(key)).current);
      return out;
    });
  }

  put(
    key: Uint8Array,
    value: Uint8Array,
    expiresAtMs: number,
    ifVersion?: number,
  ): Promise<number> {
    return this.#serial(() => this.#put(key, value, expiresAtMs, ifVersion));
  }

  delete(key: Uint8Array, ifVersion?: number): Promise<boolean> {
    return this.#serial(() => this.#delete(key, ifVersion));
  }

  txn(writes: TxnWrite[]): Promise<number> {
    return this.#serial(() => this.#txn(writes));
  }

  /**
   * Runs overlay operations one at a time, in call order: a command may
   * start several at once (DEL a a deletes its keys together), and each must
   * see the ones before it, as the state machine applies them in order.
   */
  #serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#last.then(op);
    this.#last = run.catch(() => {});
    return run;
  }

  #last: Promise<unknown> = Promise.resolve();

  async #put(
    key: Uint8Array,
    value: Uint8Array,
    expiresAtMs: number,
    ifVersion?: number,
  ): Promise<number> {
    checkWrite(key, value, expiresAtMs, this.node.clock.wallMs());
    const t = ifVersion === undefined ? this.#blind(key) : await this.#expect(key, ifVersion);
    const version = this.#nextVersion++;
    // A deadline already past (SET ... PXAT 1) leaves the key absent for the commands after it,
    // as in Redis, where such a SET deletes the key.
    const expired = expiresAtMs !== 0 && expiresAtMs <= this.#ttlAtMs;
    t.current = expired ? undefined : { key, value, version, expiresAtMs };
    t.written = true;
    return version;
  }

  async #delete(key: Uint8Array, ifVersion?: number): Promise<boolean> {
    if (neverStored(key)) return false;
    checkWrite(key, undefined, 0, 0);
    // The reply says whether the key existed, so the transaction depends on it: read it.
    const t = ifVersion === undefined ? await this.#touch(key) : await this.#expect(key, ifVersion);
    const existed = t.current !== undefined;
    t.current = undefined;
    t.written = true;
    return existed;
  }

  async #txn(writes: TxnWrite[]): Promise<number> {
    const nowMs = this.node.clock.wallMs();
    for (const w of writes) checkWrite(w.key, w.value, w.expiresAtMs, nowMs);
    // Every condition before any write, as the state machine does.
    for (const w of writes) if (w.ifVersion !== undefined) await this.#expect(w.key, w.ifVersion);
    const version = this.#nextVersion++;
    for (const w of writes) {
      if (w.checkOnly) continue;
      const t = this.#blind(w.key);
      t.current = w.value === undefined
        ? undefined
        : { key: w.key, value: w.value, version, expiresAtMs: w.expiresAtMs };
      t.written = true;
    }
    return version;
  }

  /**
   * The version each key had at the pinned revision (reads it if the
   * transaction has not yet); WATCH compares these with what it saw.
   */
  async versionAtPin(key: Uint8Array): Promise<number> {
    const t = await this.#touch(key);
    return t.readVersion ?? 0;
  }

  /**
   * The transaction as one Txn's writes: each written key's final state,
   * conditioned on its pinned version when the transaction read it, and a
   * check-only condition for each key only read.
   */
  writes(): TxnWrite[] {
    const writes: TxnWrite[] = [];
    for (const t of this.#touched.values()) {
      // A key no write can create never changes: nothing to write or to check.
      if (neverStored(t.key)) continue;
      if (t.written) {
        writes.push({
          key: t.key,
          value: t.current?.value,
          expiresAtMs: t.current?.expiresAtMs ?? 0,
          ifVersion: t.readVersion,
        });
      } else if (t.readVersion !== undefined) {
        writes.push({
          key: t.key,
          value: undefined,
          expiresAtMs: 0,
          ifVersion: t.readVersion,
          checkOnly: true,
        });
      }
    }
    return writes;
  }

  /** The key's entry, reading it at the pinned revision the first time it matters. */
  async #touch(key: Uint8Array): Promise<Touched> {
    const t = this.#blind(key);
    if (t.readVersion === undefined && !t.written) {
      const kv = await this.#readAtPin(key);
      t.current = kv;
      t.readVersion = kv?.version ?? 0;
    }
    return t;
  }

  /** The key's entry for a blind write: no read, so no condition unless it was read before. */
  #blind(key: Uint8Array): Touched {
    const id = byteString(key);
    let t = this.#touched.get(id);
    if (t === undefined) {
      t = { key, current: undefined, readVersion: undefined, written: false };
      this.#touched.set(id, t);
    }
    return t;
  }

  /** Refuses with Conflict, as the state machine would, unless the key is at `ifVersion`. */
  async #expect(key: Uint8Array, ifVersion: number): Promise<Touched> {
    const t = await this.#touch(key);
    const version = t.current?.version ?? 0;
    if (version !== ifVersion) throw new ConflictError(key, version);
    return t;
  }

  async #readAtPin(key: Uint8Array): Promise<KeyValue | undefined> {
    if (neverStored(key)) return undefined;
    const read = {
      version: this.#version,
      consistency: "serializable" as const,
      ttlAtMs: this.#ttlAtMs,
    };
    return (await this.node.get(key, read)).kv;
  }
}
