/**
 * A recorded client workload for fault runs (TESTING.md, "History rules"):
 * independent clients, one request in flight each, over a few keys, with
 * unique written values and a request id on every write. Every operation is
 * recorded with its invoke and return times and its result (a compare-and-set
 * made with the Txn call is recorded as a cas); a write whose
 * outcome is unknown (timeout, unreachable, connection lost) stays open with
 * `returnTime: Infinity`, to be settled from the committed log after the run.
 *
 * @module
 */

import { KVClient } from "../../lib/client/kv_client.ts";
import { ConflictError, isKVError } from "../../lib/common/errors.ts";
import { utf8 } from "../../lib/common/bytes.ts";
import type { Random } from "../../lib/common/random.ts";
import type { HistoryOp } from "./linearizability.ts";

const dec = new TextDecoder();

/** Shape of a workload. */
export interface WorkloadOptions {
  /** Server addresses; each client talks to all of them (leader routing, retries). */
  endpoints: string[];
  clients: number;
  /** Keys are `<prefix><n>` for n < keys. */
  keys: number;
  prefix: string;
  /** Per-operation deadline (retries included). */
  timeoutMs: number;
  random: Random;
}

/** Counts for the summary. */
export interface WorkloadStats {
  ops: number;
  acknowledgedWrites: number;
  openWrites: number;
  failedReads: number;
}

/** Runs clients until stopped and keeps their history. */
export class Workload {
  readonly history: HistoryOp[] = [];
  readonly stats: WorkloadStats = { ops: 0, acknowledgedWrites: 0, openWrites: 0, failedReads: 0 };
  #stop = false;
  #running: Promise<void>[] = [];
  #clients: KVClient[] = [];
  #seq = 0;
  readonly #t0 = performance.now();

  constructor(readonly options: WorkloadOptions) {}

  /** Starts every client loop. */
  start(): void {
    for (let c = 0; c < this.options.clients; c++) {
      const client = new KVClient({
        endpoints: this.options.endpoints,
        timeoutMs: this.options.timeoutMs,
      });
      this.#clients.push(client);
      this.#running.push(this.#loop(c, client));
    }
  }

  /** Stops after the requests in flight finish (each is bounded by its deadline). */
  async stop(): Promise<void> {
    this.#stop = true;
    await Promise.all(this.#running);
    for (const c of this.#clients) c.close();
  }

  #now(): number {
    return performance.now() - this.#t0;
  }

  async #loop(clientId: number, client: KVClient): Promise<void> {
    const r = this.options.random;
    const lastSeen = new Map<string, number>();
    for (let i = 0; !this.#stop && i < 1_000_000; i++) {
      const key = `${this.options.prefix}${r.nextInt(this.options.keys)}`;
      const dice = r.nextInt(100);
      if (dice < 45) await this.#get(clientId, client, key, lastSeen);
      else if (dice < 80) await this.#put(clientId, client, key, lastSeen);
      else if (dice < 86) await this.#cas(clientId, client, key, lastSeen);
      else if (dice < 92) await this.#cas(clientId, client, key, lastSeen, true);
      else await this.#delete(clientId, client, key);
      this.stats.ops++;
    }
  }

  #value(clientId: number): string {
    return `c${clientId}-${this.#seq++}`;
  }

  #requestId(): string {
    return `chaos-${crypto.randomUUID()}`;
  }

  async #get(
    clientId: number,
    client: KVClient,
    key: string,
    lastSeen: Map<string, number>,
  ): Promise<void> {
    const invokeTime = this.#now();
    try {
      const kv = await client.get(key);
      const returnTime = this.#now();
      if (kv) lastSeen.set(key, kv.version);
      else lastSeen.set(key, 0);
      this.history.push({
        kind: "get",
        key,
        clientId,
        invokeTime,
        returnTime,
        result: kv
          ? { found: true, value: dec.decode(kv.value), version: kv.version }
          : { found: false, version: 0 },
      });
    } catch {
      this.stats.failedReads++; // a read that failed tells nothing: dropped
    }
  }

  async #put(
    clientId: number,
    client: KVClient,
    key: string,
    lastSeen: Map<string, number>,
  ): Promise<void> {
    const value = this.#value(clientId);
    const requestId = this.#requestId();
    const invokeTime = this.#now();
    try {
      const { version } = await client.put(key, value, { requestId });
      lastSeen.set(key, version);
      this.stats.acknowledgedWrites++;
      this.history.push({
        kind: "put",
        key,
        value,
        requestId,
        clientId,
        invokeTime,
        returnTime: this.#now(),
        result: { version },
      });
    } catch (e) {
      if (isKVError(e, "InvalidArgument")) throw e; // the workload is wrong, not the store
      this.stats.openWrites++;
      this.history.push({
        kind: "put",
        key,
        value,
        requestId,
        clientId,
        invokeTime,
        returnTime: Infinity,
      });
    }
  }

  /**
   * A compare-and-set: a Put with ifVersion, or (`asTxn`) the same as a
   * transaction, which on failure reads the key's current version instead.
   */
  async #cas(
    clientId: number,
    client: KVClient,
    key: string,
    lastSeen: Map<string, number>,
    asTxn = false,
  ): Promise<void> {
    const value = this.#value(clientId);
    const requestId = this.#requestId();
    const ifVersion = lastSeen.get(key) ?? 0;
    const invokeTime = this.#now();
    try {
      let version: number;
      if (asTxn) {
        const r = await client.txn({
          compare: [{ key, version: ifVersion }],
          success: [{ put: key, value }],
          failure: [{ get: key }],
        }, { requestId });
        const answer = r.results[0];
        if (!r.succeeded) {
          throw new ConflictError(utf8(key), answer.kind === "get" ? answer.kv?.version ?? 0 : -1);
        }
        version = r.revision;
      } else version = (await client.put(key, value, { requestId, ifVersion })).version;
      lastSeen.set(key, version);
      this.stats.acknowledgedWrites++;
      this.history.push({
        kind: "cas",
        key,
        value,
        ifVersion,
        requestId,
        clientId,
        invokeTime,
        returnTime: this.#now(),
        result: { ok: true, version },
      });
    } catch (e) {
      if (e instanceof ConflictError) {
        lastSeen.set(key, e.currentVersion);
        this.history.push({
          kind: "cas",
          key,
          value,
          ifVersion,
          requestId,
          clientId,
          invokeTime,
          returnTime: this.#now(),
          result: { ok: false, currentVersion: e.currentVersion },
        });
        return;
      }
      if (isKVError(e, "InvalidArgument")) throw e;
      this.stats.openWrites++;
      this.history.push({
        kind: "cas",
        key,
        value,
        ifVersion,
        requestId,
        clientId,
        invokeTime,
        returnTime: Infinity,
      });
    }
  }

  async #delete(clientId: number, client: KVClient, key: string): Promise<void> {
    const requestId = this.#requestId();
    const invokeTime = this.#now();
    try {
      const r = await client.delete(key, { requestId });
      if (r.deleted) this.stats.acknowledgedWrites++;
      this.history.push({
        kind: "delete",
        key,
        requestId,
        clientId,
        invokeTime,
        returnTime: this.#now(),
        result: { deleted: r.deleted, version: r.version },
      });
    } catch (e) {
      if (isKVError(e, "InvalidArgument")) throw e;
      this.stats.openWrites++;
      this.history.push({
        kind: "delete",
        key,
        requestId,
        clientId,
        invokeTime,
        returnTime: Infinity,
      });
    }
  }
}
