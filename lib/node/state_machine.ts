/**
 * The replicated state machine: applies committed Raft entries to the MVCC
 * storage engine. Deterministic by construction: the same entries give the
 * same engine contents on every replica, because
 *
 * - the version of each write is the cluster revision, counted here at apply
 *   time (one per successful write command, one per membership change);
 * - every time-dependent decision (TTL, request-id retention) uses the
 *   proposer's timestamp carried in the command, never this replica's clock;
 * - request ids are remembered in the engine itself (system keys), so a
 *   retried write is deduplicated after restarts and snapshot installs too.
 *
 * Key space: user keys may not start with byte 0x00; keys that do hold the
 * node's own state (see `systemKey`). The applied index is stored atomically
 * with each batch, so after a crash the node replays its Raft log from
 * `appliedIndex + 1` and lands in the same state.
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import {
  ByteReader,
  byteString,
  ByteWriter,
  emptyBytes,
  equalBytes,
  fromUtf8,
  isAscii,
  utf8,
} from "../common/bytes.ts";
import {
  CompactedError,
  ConflictError,
  FutureVersionError,
  InvalidArgumentError,
} from "../common/errors.ts";
import { maxApplyBatchBytes, maxKeyBytes, requestIdRetentionMs } from "../common/limits.ts";
import { type Engine, type KV, readNeedsIo } from "../storage/engine.ts";
import { WriteBatch } from "../storage/write_batch.ts";
import { allocBytes } from "../common/byte_pool.ts";
import { writeU64 } from "../storage/internal_key.ts";
import { type BatchableCommand, type Command, CommandOp, decodeCommand } from "./command.ts";

/** First byte of every system key; user keys may not start with it. */
export const systemKeyByte = 0x00;

/**
 * A system key: 0x00, a kind letter, then the name. Kinds: "m" node metadata,
 * "r" a remembered request id, "t" the ids one entry remembered, under its
 * apply time (see `requestIdTimeKey`).
 */
export function systemKey(kind: "m" | "r" | "t", name: string): Uint8Array {
  // Pooled: system keys are looked up or copied into a write batch, then dropped.
  // An ASCII name (every request id) is copied char by char, without an encoder call.
  const n = isAscii(name) ? undefined : utf8(name);
  const out = allocBytes(2 + (n ? n.length : name.length));
  out[0] = systemKeyByte;
  out[1] = kind.charCodeAt(0);
  if (n) out.set(n, 2);
  else for (let i = 0; i < name.length; i++) out[2 + i] = name.charCodeAt(i);
  return out;
}

/** Rejects user keys in the reserved system range. */
export function checkUserKey(key: Uint8Array): void {
  if (key.length > 0 && key[0] === systemKeyByte) {
    throw new InvalidArgumentError("keys starting with byte 0x00 are reserved for the system");
  }
}

const membershipKey = systemKey("m", "members");

/**
 * The time index of remembered request ids: 0x00 't', the leader timestamp
 * as u64 big-endian, then the first id an entry remembered (the value lists
 * the entry's other ids). Byte order is time order, so forgetting expired
 * ids scans only the expired ones instead of every remembered id.
 */
export function requestIdTimeKey(timestampMs: number, requestId: string): Uint8Array {
  const id = isAscii(requestId) ? undefined : utf8(requestId);
  const out = allocBytes(10 + (id ? id.length : requestId.length));
  out[0] = systemKeyByte;
  out[1] = 0x74; // 't'
  writeU64(out, 2, Math.max(0, timestampMs));
  if (id) out.set(id, 10);
  else for (let i = 0; i < requestId.length; i++) out[10 + i] = requestId.charCodeAt(i);
  return out;
}

/** A stored key-value as the API returns it. */
export interface KeyValue {
  key: Uint8Array;
  value: Uint8Array;
  version: number;
  expiresAtMs: number;
}

/** What one applied command produced, handed back to the proposer. */
export interface ApplyResult {
  /** The revision of this write, or the current revision when nothing was written. */
  revision: number;
  /** Whether a delete removed a key / a put or delete happened at all. */
  changed: boolean;
  prev?: KeyValue;
  /** A failed compare-and-set. */
  error?: Error;
  /** True when this was a retry whose request id had already been applied. */
  deduplicated?: boolean;
  /** A deduplicated write: the leader timestamp its first apply ran at (its TTL clock). */
  appliedAtMs?: number;
  /** A Batch command: one result per command, in order. */
  results?: ApplyResult[];
}

/** A change the watch hub fans out (one per key written). */
export interface ChangeEvent {
  type: "put" | "delete";
  kv: KeyValue;
  prev?: KeyValue;
}

/** Cluster members and their addresses, persisted with the data. */
export interface MemberRecord {
  id: string;
  addr: string;
  learner: boolean;
}

/** A write of the apply batch, as later reads in the same batch see it. */
interface Pending {
  value: Uint8Array | undefined;
  version: number;
  expiresAtMs: number;
}

/**
 * The writes of one apply batch, for reads later in the same batch. Most
 * batches are blind writes that nothing reads back (a pipeline of SETs), so
 * the index by key (a string per key, a Map insert) is built only when the
 * first read comes, from the writes recorded so far, and kept up from then on.
 */
class PendingWrites {
  #keys: Uint8Array[] = [];
  #writes: Pending[] = [];
  #byKey: Map<string, Pending> | undefined;

  /** Records the newest write of `key` (a later one replaces it). */
  set(key: Uint8Array, write: Pending): void {
    if (this.#byKey !== undefined) this.#byKey.set(byteString(key), write);
    else {
      this.#keys.push(key);
      this.#writes.push(write);
    }
  }

  /** The newest write of the key whose `byteString` is `ks`, if the batch wrote it. */
  get(ks: string): Pending | undefined {
    if (this.#byKey === undefined) {
      this.#byKey = new Map();
      for (let i = 0; i < this.#keys.length; i++) {
        this.#byKey.set(byteString(this.#keys[i]), this.#writes[i]);
      }
      this.#keys = [];
      this.#writes = [];
    }
    return this.#byKey.get(ks);
  }
}

/** What one `apply` call accumulates and the reads it answers from memory. */
interface ApplyScope {
  batch: WriteBatch;
  /** The batch's writes, for its later reads. */
  pending: PendingWrites;
  /** Dedupe records the batch wrote, by request id. */
  pendingIds: Map<string, Uint8Array>;
  events: ChangeEvent[];
  /** Engine reads done ahead of a command whose reads needed the disk, by `byteString(key)`. */
  fetched: Map<string, KV | undefined>;
  /** Dedupe records the command's check found (or fetched), by request id, with their keys. */
  fetchedIds: Map<string, DedupeRead>;
  /**
   * The revision a CompactHistory entry of the batch compacts the engine's
   * history to (0: none). It runs after the batch is written: the revision
   * may belong to one of the batch's own writes.
   */
  compactTo: number;
}

/** A request id's dedupe key and what the engine holds under it (undefined: never applied). */
interface DedupeRead {
  key: Uint8Array;
  value: Uint8Array | undefined;
}

/** An engine read without a TTL filter: the apply path filters by the command's time. */
const rawRead = { nowMs: 0 };
/** A request id's dedupe read: nearly always of an absent id, so not worth the row cache. */
const idRead = { nowMs: 0, fillCache: false };

/** The Batch command (client writes proposed together). */
type BatchCommand = Extract<Command, { op: CommandOp.Batch }>;
/** Commands the cluster proposes itself; their reads may wait for the disk. */
type MaintenanceCommand = Extract<Command, { op: CommandOp.ExpireKey | CommandOp.CompactHistory }>;

/** Encodes the member table (system key value). */
export function encodeMembers(members: MemberRecord[]): Uint8Array {
  const w = new ByteWriter(64);
  w.putU8(1).putUvarint(members.length);
  for (const m of members) w.putString(m.id).putString(m.addr).putU8(m.learner ? 1 : 0);
  return w.finish();
}

/** Decodes the member table. */
export function decodeMembers(bytes: Uint8Array): MemberRecord[] {
  const r = new ByteReader(bytes);
  if (r.u8() !== 1) throw new Error("unknown member table format");
  const n = r.uvarint();
  const out: MemberRecord[] = [];
  for (let i = 0; i < n; i++) out.push({ id: r.string(), addr: r.string(), learner: r.u8() === 1 });
  return out;
}

/**
 * How a write with a request id that changed nothing ended, kept in its
 * dedupe record so that a second copy of it (a relayed write is resent when
 * its answer is late) answers the same instead of being judged again on
 * newer state: a delete of an absent key, or a failed version condition.
 */
type Unchanged = { kind: "noop" } | { kind: "conflict"; key: Uint8Array; version: number };

/** A dedupe record; a batch's also keeps which of its commands changed something. */
interface Dedupe {
  revision: number;
  timestampMs: number;
  changed?: boolean[];
  unchanged?: Unchanged;
}

function encodeDedupe(d: Dedupe): Uint8Array {
  if (d.unchanged) {
    // Tag 0 then a kind byte: a batch's bit count starts with 0 only for an empty batch, which
    // ends right there.
    const w = new ByteWriter(32).putU64Number(d.revision).putU64Number(d.timestampMs).putU8(0);
    if (d.unchanged.kind === "noop") w.putU8(1);
    else w.putU8(2).putUvarint(d.unchanged.version).putLengthPrefixed(d.unchanged.key);
    return w.finish();
  }
  if (!d.changed) {
    // The common record (a single write): two u64s, written without BigInt or a growable buffer.
    const out = allocBytes(16);
    writeU64(out, 0, d.revision);
    writeU64(out, 8, d.timestampMs);
    return out;
  }
  const w = new ByteWriter(32).putU64Number(d.revision).putU64Number(d.timestampMs);
  const bits = new Uint8Array(Math.ceil(d.changed.length / 8));
  d.changed.forEach((c, i) => {
    if (c) bits[i >> 3] |= 1 << (i & 7);
  });
  w.putUvarint(d.changed.length).putBytes(bits);
  return w.finish();
}

function decodeDedupe(bytes: Uint8Array): Dedupe {
  const r = new ByteReader(bytes);
  const d: Dedupe = { revision: r.u64Number(), timestampMs: r.u64Number() };
  if (r.remaining > 1 && bytes[r.offset] === 0) {
    r.u8();
    const kind = r.u8();
    d.unchanged = kind === 1
      ? { kind: "noop" }
      : { kind: "conflict", version: r.uvarint(), key: r.lengthPrefixed(maxKeyBytes) };
  } else if (r.remaining > 0) {
    const n = r.uvarint();
    const bits = r.bytesView(Math.ceil(n / 8));
    d.changed = Array.from({ length: n }, (_, i) => (bits[i >> 3] & (1 << (i & 7))) !== 0);
  }
  return d;
}

/**
 * The dedupe record `bytes` (undefined: none) if its id is still
 * remembered at leader time `nowMs`: an id past the retention window counts
 * as unknown even before history compaction forgets it, the same on every
 * replica.
 */
function liveDedupe(bytes: Uint8Array | undefined, nowMs: number): Dedupe | undefined {
  if (!bytes) return undefined;
  const d = decodeDedupe(bytes);
  return nowMs - d.timestampMs > requestIdRetentionMs ? undefined : d;
}

/**
 * The value of a time-index record: the entry's ids after the first (which
 * is in the key), as uvarint n then n strings; empty when there are none.
 */
function encodeIdList(ids: string[], from: number): Uint8Array {
  if (ids.length <= from) return emptyBytes;
  const w = new ByteWriter(16 + 32 * (ids.length - from));
  w.putUvarint(ids.length - from);
  for (let i = from; i < ids.length; i++) w.putString(ids[i]);
  return w.finish();
}

function decodeIdList(bytes: Uint8Array): string[] {
  if (bytes.length === 0) return [];
  const r = new ByteReader(bytes);
  const n = r.uvarint();
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push(r.string());
  return ids;
}

/** One committed entry as the state machine sees it. */
export interface ApplyEntry {
  index: number;
  /** Encoded Command, or empty for a no-op. */
  data: Uint8Array;
  /** Set for membership changes: the new member table to store. */
  members?: MemberRecord[];
}

/** Applies entries to the engine and tracks the revision. */
export class StateMachine {
  #revision: number;
  #publishedRevision: number;
  #appliedIndex: number;
  /** Called with every change, in revision order, after the batch is written. */
  onChange: ((events: ChangeEvent[], revision: number) => void) | undefined;
  /**
   * Whether change events must carry the previous value (a watcher asked for
   * it); asked before each put, so a watcher opened during an apply batch
   * gets prev on every event after its start revision.
   */
  wantPrevForEvents: () => boolean = () => true;
  /**
   * Called for every key written or deleted: when its new version expires
   * (0: never, a write without TTL or a delete), so the expiry queue holds
   * exactly the keys whose newest version expires.
   */
  onExpiry: ((key: Uint8Array, version: number, expiresAtMs: number) => void) | undefined;
  /** Called for every ExpireKey entry applied (whether it deleted the key or found it rewritten). */
  onExpirySettled: ((key: Uint8Array, version: number) => void) | undefined;

  #engine: Engine;
  /** Request ids the entry being applied remembered (see #indexEntryIds). */
  #entryIds: string[] = [];
  /** An apply is under way (between its first await and its end). */
  #applying = false;
  /** Callbacks waiting for the running apply to end (see atRest). */
  #atRest: Array<() => void> = [];

  constructor(engine: Engine) {
    this.#engine = engine;
    this.#revision = engine.currentVersion;
    this.#publishedRevision = this.#revision;
    this.#appliedIndex = Math.max(0, engine.appliedIndex);
  }

  /** The engine holding the applied state (replaced when a snapshot is installed). */
  get engine(): Engine {
    return this.#engine;
  }

  /** Switches to an engine that holds an installed snapshot. */
  reset(engine: Engine): void {
    this.#engine = engine;
    this.#revision = engine.currentVersion;
    this.#publishedRevision = this.#revision;
    this.#appliedIndex = Math.max(0, engine.appliedIndex);
  }

  /**
   * The write request id `requestId` named, if this replica applied it and
   * still remembers it: its revision and the leader time it ran at. A
   * retried transaction answers from this (lib/node/txn.ts).
   */
  async appliedRequest(
    requestId: string,
    nowMs: number,
  ): Promise<{ revision: number; appliedAtMs: number } | undefined> {
    if (requestId === "") return undefined;
    const d = liveDedupe((await this.engine.get(systemKey("r", requestId), idRead))?.value, nowMs);
    return d && { revision: d.revision, appliedAtMs: d.timestampMs };
  }

  /** The current cluster revision (version of the newest write applied). */
  get revision(): number {
    return this.#revision;
  }

  /**
   * The revision up to which writes are in the engine and their change
   * events have gone out. It trails `revision` while a batch is being
   * written: a watch that opens then replays history up to here and takes
   * the batch's events live, so it misses none of them.
   */
  get publishedRevision(): number {
    return this.#publishedRevision;
  }

  /** The Raft index of the last applied entry. */
  get appliedIndex(): number {
    return this.#appliedIndex;
  }

  /** The member table as of the applied index, or undefined before the first change. */
  async members(): Promise<MemberRecord[] | undefined> {
    const kv = await this.engine.get(membershipKey);
    return kv ? decodeMembers(kv.value) : undefined;
  }

  /**
   * Applies committed entries in order with one engine write carrying the
   * last applied index (more writes, each with its own last index, when the
   * entries' changes exceed maxApplyBatchBytes). Returns one result per
   * entry index (no-ops and membership changes get a result too). Entries at
   * or below the applied index are skipped (replay after restart).
   */
  async apply(entries: ApplyEntry[]): Promise<Map<number, ApplyResult>> {
    assert(!this.#applying, "apply: an apply is already running");
    this.#applying = true;
    let results: Map<number, ApplyResult>;
    try {
      results = await this.#applyEntries(entries);
    } catch (e) {
      // The node stops on a failed apply; its state is not a point anyone may capture.
      this.#applying = false;
      this.#atRest = [];
      throw e;
    }
    this.#applying = false;
    const waiting = this.#atRest;
    this.#atRest = [];
    for (const f of waiting) f();
    return results;
  }

  /**
   * Runs `f` at a point where no apply is under way: now, or as soon as the
   * running one has finished (before anything else runs). There, the applied
   * index, the revision and the engine's contents describe the same state,
   * which is what a snapshot must capture.
   */
  atRest(f: () => void): void {
    if (this.#applying) this.#atRest.push(f);
    else f();
  }

  async #applyEntries(entries: ApplyEntry[]): Promise<Map<number, ApplyResult>> {
    const results = new Map<number, ApplyResult>();
    const s: ApplyScope = {
      batch: new WriteBatch(),
      pending: new PendingWrites(),
      pendingIds: new Map(),
      events: [],
      fetched: new Map(),
      fetchedIds: new Map(),
      compactTo: 0,
    };
    let last = this.#appliedIndex;
    this.#entryIds = [];
    for (const entry of entries) {
      if (entry.index <= this.#appliedIndex) continue;
      assert(entry.index === last + 1, `apply: expected index ${last + 1}, got ${entry.index}`);
      last = entry.index;
      if (entry.members) {
        this.#revision++;
        s.batch.put(membershipKey, encodeMembers(entry.members), { version: this.#revision });
        results.set(entry.index, { revision: this.#revision, changed: true });
        continue;
      }
      if (entry.data.length === 0) {
        results.set(entry.index, { revision: this.#revision, changed: false });
        continue;
      }
      const command = decodeCommand(entry.data);
      if (command.op === CommandOp.CompactHistory && s.batch.count > 0) {
        // It scans the engine for expired request ids: those this batch remembered must be
        // there, or what it forgets would depend on how entries were grouped into batches.
        await this.#writeBatch(s, last - 1);
      }
      if (command.op === CommandOp.ExpireKey || command.op === CommandOp.CompactHistory) {
        results.set(entry.index, await this.#applyMaintenance(command, s));
        if (command.op === CommandOp.CompactHistory) {
          // Later entries of the batch check their ids against the engine: it must already
          // have forgotten what this entry forgot, as it would in a batch of their own.
          if (s.batch.count > 0) await this.#writeBatch(s, last);
          s.pendingIds.clear();
        }
      } else {
        // Client writes apply without waiting: their reads come from memory, and the rare
        // read that needs the disk is done first, before anything of the command is applied.
        if (!this.#readsInMemory(command, s)) await this.#fetchReads(command, s);
        results.set(entry.index, this.#applyWrite(command, command.timestampMs, s));
        s.fetched.clear();
        s.fetchedIds.clear();
      }
      this.#indexEntryIds(command.timestampMs, s.batch);
      if (s.batch.byteSize >= maxApplyBatchBytes) {
        // Large values: write what we have, so no WAL record outgrows what a reader accepts.
        await this.#writeBatch(s, last);
      }
    }
    if (last !== this.#appliedIndex) await this.#writeBatch(s, last);
    if (s.compactTo > 0) {
      // Local bookkeeping only: what a replica decides never depends on how far its own
      // history was compacted (a crash, or a snapshot install, makes that differ).
      await this.engine.compactHistory(Math.min(s.compactTo, this.engine.currentVersion));
    }
    this.#publishedRevision = this.#revision;
    if (s.events.length > 0) this.onChange?.(s.events, this.#revision);
    return results;
  }

  /**
   * Writes the batch's changes so far, with `appliedIndex` (the last entry
   * they cover), and starts a new batch; the batch's other state (pending
   * writes, events) carries on.
   */
  async #writeBatch(s: ApplyScope, appliedIndex: number): Promise<void> {
    await this.engine.write(s.batch, { sync: false, appliedIndex });
    this.#appliedIndex = appliedIndex;
    s.batch = new WriteBatch();
  }

  /** Whether a put must read the key's current state (a condition, or someone wants prev). */
  #putReadsKey(c: { ifVersion: number | undefined; wantPrev?: boolean }): boolean {
    return c.ifVersion !== undefined || c.wantPrev === true || this.wantPrevForEvents();
  }

  /**
   * True when every engine read `c` can make is answered from memory now
   * (memtables, cached blocks). Called in the same turn as the apply, so
   * the answer still holds when the command runs.
   */
  #readsInMemory(c: Command, s: ApplyScope): boolean {
    const e = this.engine;
    if ("requestId" in c && c.requestId !== "" && !s.pendingIds.has(c.requestId)) {
      // The dedupe lookup is done here, once: #dedupe and #remember take its result and key.
      const key = systemKey("r", c.requestId);
      const kv = e.getNow(key, idRead);
      if (kv === readNeedsIo) return false;
      s.fetchedIds.set(c.requestId, { key, value: kv?.value });
    }
    switch (c.op) {
      case CommandOp.Put:
        return !this.#putReadsKey(c) || e.getNow(c.key, rawRead) !== readNeedsIo;
      case CommandOp.Delete:
        return e.getNow(c.key, rawRead) !== readNeedsIo;
      case CommandOp.Txn:
        return c.writes.every((w) => e.getNow(w.key, rawRead) !== readNeedsIo);
      case CommandOp.Batch:
        return c.commands.every((sub) => this.#readsInMemory(sub, s));
      default:
        return false;
    }
  }

  /**
   * Reads from the engine everything `c` could read (request ids and every
   * key it names), into `s.fetched`, for a command whose reads need the disk.
   */
  async #fetchReads(c: Command, s: ApplyScope): Promise<void> {
    if ("requestId" in c && c.requestId !== "") {
      const key = systemKey("r", c.requestId);
      s.fetchedIds.set(c.requestId, { key, value: (await this.engine.get(key, idRead))?.value });
    }
    const fetchKey = async (key: Uint8Array) => {
      s.fetched.set(byteString(key), await this.engine.get(key, rawRead));
    };
    switch (c.op) {
      case CommandOp.Put:
      case CommandOp.Delete:
        await fetchKey(c.key);
        break;
      case CommandOp.Txn:
        for (const w of c.writes) await fetchKey(w.key);
        break;
      case CommandOp.Batch:
        for (const sub of c.commands) await this.#fetchReads(sub, s);
        break;
    }
  }

  /** An engine read the apply path was promised was in memory or fetched. */
  #engineRead(key: Uint8Array, ks: string, s: ApplyScope): KV | undefined {
    if (s.fetched.size > 0 && s.fetched.has(ks)) return s.fetched.get(ks);
    const kv = this.engine.getNow(key, rawRead);
    assert(kv !== readNeedsIo, "apply: a read needed the disk after #readsInMemory said no");
    return kv;
  }

  /** Current state of `key` as of the leader time `nowMs`, seeing writes pending in this batch. */
  #current(key: Uint8Array, nowMs: number, s: ApplyScope): KeyValue | undefined {
    const ks = byteString(key);
    const p = s.pending.get(ks);
    if (p) {
      if (p.value === undefined || (p.expiresAtMs > 0 && p.expiresAtMs <= nowMs)) return undefined;
      return { key, value: p.value, version: p.version, expiresAtMs: p.expiresAtMs };
    }
    const kv = this.#engineRead(key, ks, s);
    if (!kv) return undefined;
    const expiresAtMs = kv.expiresAtMs ?? 0;
    if (expiresAtMs > 0 && expiresAtMs <= nowMs) return undefined;
    return { key, value: kv.value, version: kv.version, expiresAtMs };
  }

  /**
   * The earlier result of a request id, if it was applied within the
   * retention window. It must see ids applied earlier in the same batch too:
   * how entries group into apply batches differs between replicas, so a
   * lookup that only read the engine would let a retry that committed in the
   * same batch as its original apply twice on one replica and once on
   * another.
   */
  #dedupe(requestId: string, timestampMs: number, s: ApplyScope): ApplyResult | undefined {
    if (requestId === "") return undefined;
    let bytes = s.pendingIds.get(requestId);
    if (bytes === undefined) {
      const read = s.fetchedIds.get(requestId);
      if (read !== undefined) {
        bytes = read.value;
      } else {
        const kv = this.engine.getNow(systemKey("r", requestId), idRead);
        assert(kv !== readNeedsIo, "apply: a dedupe read needed the disk after the check");
        bytes = kv?.value;
      }
    }
    const d = liveDedupe(bytes, timestampMs);
    if (!d) return undefined;
    const result: ApplyResult = {
      revision: d.revision,
      // As the first apply answered: a batch changed something if one of its writes did.
      changed: d.unchanged ? false : d.changed ? d.changed.includes(true) : true,
      deduplicated: true,
      appliedAtMs: d.timestampMs,
    };
    if (d.unchanged?.kind === "conflict") {
      result.error = new ConflictError(d.unchanged.key, d.unchanged.version);
    }
    if (d.changed) {
      result.results = d.changed.map((changed) => ({
        revision: d.revision,
        changed,
        deduplicated: true,
      }));
    }
    return result;
  }

  /**
   * Writes the time-index record of the ids the entry just applied
   * remembered: one record per entry, not per write (a Batch entry carries
   * many writes). Its key names the first id, its value the others; the
   * entry is the same on every replica, so the records are too.
   */
  #indexEntryIds(timestampMs: number, batch: WriteBatch): void {
    const ids = this.#entryIds;
    if (ids.length === 0) return;
    this.#entryIds = [];
    batch.put(requestIdTimeKey(timestampMs, ids[0]), encodeIdList(ids, 1), {
      version: this.#revision,
    });
  }

  /** Records that `requestId` was applied at `revision` (in the batch and for this batch's lookups). */
  #remember(
    requestId: string,
    revision: number,
    timestampMs: number,
    s: ApplyScope,
    changed?: boolean[],
    unchanged?: Unchanged,
  ): void {
    if (requestId === "") return;
    const key = s.fetchedIds.get(requestId)?.key ?? systemKey("r", requestId);
    const value = encodeDedupe({ revision, timestampMs, changed, unchanged });
    s.batch.put(key, value, { version: revision });
    this.#entryIds.push(requestId);
    s.pendingIds.set(requestId, value);
  }

  /**
   * The answer of a Put or Delete that changes nothing. With a request id it
   * still takes a revision, for the record that answers a second copy the
   * same way (everything stored gets the revision of its own entry): a
   * follower resends a relayed write whose answer is late, and answers from
   * the first copy it applies.
   */
  #unchanged(
    requestId: string,
    now: number,
    s: ApplyScope,
    outcome: Unchanged,
    prev?: KeyValue,
  ): ApplyResult {
    const error = outcome.kind === "conflict"
      ? new ConflictError(outcome.key, outcome.version)
      : undefined;
    if (requestId === "") return { revision: this.#revision, changed: false, prev, error };
    const revision = ++this.#revision;
    this.#remember(requestId, revision, now, s, undefined, outcome);
    return { revision, changed: false, prev, error };
  }

  /** Applies a client write (its reads are in memory: see #readsInMemory). `now` is the leader's time. */
  #applyWrite(c: BatchableCommand | BatchCommand, now: number, s: ApplyScope): ApplyResult {
    switch (c.op) {
      case CommandOp.Put: {
        const seen = this.#dedupe(c.requestId, now, s);
        if (seen) return seen;
        // The previous value is only reported, never stored: read it only when someone asks.
        const prev = this.#putReadsKey(c) ? this.#current(c.key, now, s) : undefined;
        if (c.ifVersion !== undefined && (prev?.version ?? 0) !== c.ifVersion) {
          const conflict = { kind: "conflict" as const, key: c.key, version: prev?.version ?? 0 };
          return this.#unchanged(c.requestId, now, s, conflict, prev);
        }
        const revision = ++this.#revision;
        s.batch.put(c.key, c.value, { version: revision, expiresAtMs: c.expiresAtMs });
        s.pending.set(c.key, {
          value: c.value,
          version: revision,
          expiresAtMs: c.expiresAtMs,
        });
        this.#remember(c.requestId, revision, now, s);
        const kv = { key: c.key, value: c.value, version: revision, expiresAtMs: c.expiresAtMs };
        s.events.push({ type: "put", kv, prev });
        this.onExpiry?.(c.key, revision, c.expiresAtMs);
        return { revision, changed: true, prev };
      }
      case CommandOp.Delete: {
        const seen = this.#dedupe(c.requestId, now, s);
        if (seen) return seen;
        const prev = this.#current(c.key, now, s);
        if (c.ifVersion !== undefined && (prev?.version ?? 0) !== c.ifVersion) {
          const conflict = { kind: "conflict" as const, key: c.key, version: prev?.version ?? 0 };
          return this.#unchanged(c.requestId, now, s, conflict, prev);
        }
        if (!prev) return this.#unchanged(c.requestId, now, s, { kind: "noop" });
        const revision = ++this.#revision;
        this.#deleteKey(c.key, revision, s);
        this.#remember(c.requestId, revision, now, s);
        s.events.push({
          type: "delete",
          kv: { key: c.key, value: emptyBytes, version: revision, expiresAtMs: 0 },
          prev,
        });
        return { revision, changed: true, prev };
      }
      case CommandOp.Txn: {
        const seen = this.#dedupe(c.requestId, now, s);
        if (seen) return seen;
        // Every condition is checked before anything is written: all or nothing.
        for (const w of c.writes) {
          if (w.ifVersion === undefined) continue;
          const version = this.#current(w.key, now, s)?.version ?? 0;
          if (version !== w.ifVersion) {
            // A RESP transaction's failure is its outcome: recorded, so a copy answers alike.
            // Otherwise no record: the id stays free until the transaction commits. The leader
            // re-plans a transaction whose conditions failed and proposes it again with the
            // same id (KVNode.txn), and a record of the failure would answer that as the outcome.
            const recordedId = c.conflictIsFinal ? c.requestId : "";
            return this.#unchanged(recordedId, now, s, { kind: "conflict", key: w.key, version });
          }
        }
        // One that changes no key (conditions alone, deletes of absent keys) stores nothing
        // without a request id: it takes no revision, as in etcd. With one it takes a revision
        // for the id's record, since everything stored gets the revision of its own entry (a
        // snapshot reads the engine as of its revision).
        const changes = c.writes.some((w) =>
          !w.checkOnly && (w.value !== undefined || this.#current(w.key, now, s) !== undefined)
        );
        if (!changes && c.requestId === "") return { revision: this.#revision, changed: false };
        const revision = ++this.#revision;
        for (const w of c.writes) {
          if (w.checkOnly) continue;
          const prev = this.#current(w.key, now, s);
          if (w.value === undefined) {
            if (!prev) continue;
            this.#deleteKey(w.key, revision, s);
            s.events.push({
              type: "delete",
              kv: { key: w.key, value: emptyBytes, version: revision, expiresAtMs: 0 },
              prev,
            });
          } else {
            s.batch.put(w.key, w.value, { version: revision, expiresAtMs: w.expiresAtMs });
            s.pending.set(w.key, {
              value: w.value,
              version: revision,
              expiresAtMs: w.expiresAtMs,
            });
            s.events.push({
              type: "put",
              kv: { key: w.key, value: w.value, version: revision, expiresAtMs: w.expiresAtMs },
              prev,
            });
            this.onExpiry?.(w.key, revision, w.expiresAtMs);
          }
        }
        this.#remember(c.requestId, revision, now, s);
        return { revision, changed: true };
      }
      case CommandOp.Batch: {
        const seen = this.#dedupe(c.requestId, now, s);
        if (seen) return seen;
        // Every write of the batch runs at the batch's time.
        const results: ApplyResult[] = [];
        for (const sub of c.commands) results.push(this.#applyWrite(sub, now, s));
        const changed = results.map((r) => r.changed && r.error === undefined);
        // The id's record takes a revision of this entry's own when no write did.
        if (!changed.includes(true) && c.requestId !== "") this.#revision++;
        this.#remember(c.requestId, this.#revision, now, s, changed);
        return { revision: this.#revision, changed: changed.includes(true), results };
      }
    }
  }

  /** Applies the commands the cluster itself proposes: TTL expiry and history compaction. */
  async #applyMaintenance(c: MaintenanceCommand, s: ApplyScope): Promise<ApplyResult> {
    const now = c.timestampMs;
    switch (c.op) {
      case CommandOp.ExpireKey: {
        // Delete only if the key still holds the version that expired (it may have been rewritten).
        this.onExpirySettled?.(c.key, c.version);
        // The batch's own write of the key, if any, is its current state (as in a batch alone).
        const p = s.pending.get(byteString(c.key));
        const prevKv = p
          ? p.value && { value: p.value, version: p.version, expiresAtMs: p.expiresAtMs }
          : await this.engine.get(c.key, rawRead);
        if (prevKv?.version !== c.version) return { revision: this.#revision, changed: false };
        const revision = ++this.#revision;
        this.#deleteKey(c.key, revision, s);
        const prev = {
          key: c.key,
          value: prevKv.value,
          version: prevKv.version,
          expiresAtMs: prevKv.expiresAtMs ?? 0,
        };
        s.events.push({
          type: "delete",
          kv: { key: c.key, value: emptyBytes, version: revision, expiresAtMs: 0 },
          prev,
        });
        return { revision, changed: true };
      }
      case CommandOp.CompactHistory: {
        if (c.revision > this.#revision) {
          return {
            revision: this.#revision,
            changed: false,
            error: new FutureVersionError(c.revision, this.#revision),
          };
        }
        // Forgetting expired request ids depends only on replicated state and the entry's
        // time, so every replica does the same, and so does a replay after a crash: also when
        // this replica's history is already compacted past the revision (it installed a
        // snapshot, or it compacted before the crash and replays the entry).
        const before = this.#revision;
        await this.#forgetOldRequestIds(now, s.batch);
        const compacted = Math.max(this.engine.compactedVersion, s.compactTo);
        if (c.revision <= compacted) {
          return {
            revision: this.#revision,
            changed: this.#revision !== before,
            error: new CompactedError(c.revision, compacted),
          };
        }
        s.compactTo = c.revision;
        return { revision: this.#revision, changed: true };
      }
    }
  }

  #deleteKey(key: Uint8Array, revision: number, s: ApplyScope): void {
    s.batch.delete(key, { version: revision });
    s.pending.set(key, { value: undefined, version: revision, expiresAtMs: 0 });
    this.onExpiry?.(key, revision, 0);
  }

  /**
   * Drops request ids older than the retention window (deterministic: leader
   * time), walking the time index up to the cutoff only.
   */
  async #forgetOldRequestIds(nowMs: number, batch: WriteBatch): Promise<void> {
    const cutoff = nowMs - requestIdRetentionMs;
    if (cutoff <= 0) return;
    const stale: Uint8Array[] = [];
    const named: string[] = [];
    for await (
      const kv of this.engine.scan({
        start: requestIdTimeKey(0, ""),
        end: requestIdTimeKey(cutoff, ""),
      })
    ) {
      stale.push(kv.key.slice());
      named.push(fromUtf8(kv.key.subarray(10)), ...decodeIdList(kv.value));
    }
    for (const id of named) {
      // An id used again after its window has a newer record: that one is not expiring.
      const key = systemKey("r", id);
      const record = (await this.engine.get(key, idRead))?.value;
      if (record !== undefined && decodeDedupe(record).timestampMs < cutoff) stale.push(key);
    }
    if (stale.length === 0) return;
    const revision = ++this.#revision;
    for (const key of stale) batch.delete(key, { version: revision });
  }

  /** Decodes a request id key's name (for tests and debugging). */
  static requestIdOf(key: Uint8Array): string | undefined {
    const prefix = systemKey("r", "");
    if (key.length < prefix.length || !equalBytes(key.subarray(0, prefix.length), prefix)) {
      return undefined;
    }
    return fromUtf8(key.subarray(prefix.length));
  }
}
