/**
 * A Porcupine-style linearizability checker for rustkvd's KV model (invariant
 * L of TESTING.md). Pure: no I/O and no clock — the time budget is measured
 * with a `now()` the caller injects.
 *
 * ## The model
 * Keys start absent (the history must begin on an empty store and record every
 * write). Every successful write — put, delete that deleted, CAS that applied —
 * gets a version: a cluster-wide revision, unique and strictly greater than
 * the version of every write linearized before it. `get(key)` returns the
 * latest value and its version; `get(key, atVersion)` returns the newest write
 * to the key with version <= atVersion (MVCC; the server rejects versions it
 * has not reached). A delete that found nothing returns the current revision.
 * `cas(key, value, ifVersion)` writes only when the key's current version is
 * `ifVersion` (0 = absent), else reports the current version.
 *
 * ## What is checked, and why that is sound
 * The full model couples keys through the revision counter, so one search
 * over the whole history would be exact but exponential in the number of
 * keys. Instead we check four properties, each a *necessary* condition of
 * linearizability in the full model — so every violation reported is real:
 *
 * 1. **Per key (Wing & Gong / Lowe search, as in Porcupine).** Projecting a
 *    global linearization onto one key gives a linearization of that key's
 *    latest-value operations (get, put, delete, cas) in which each write's
 *    version exceeds the previous write's to that key. We search for one per
 *    key: entries of call/return events in a doubly linked list, operations
 *    lifted out as they are linearized and put back on backtracking, and a
 *    cache of visited (linearized-set bitset, model state) pairs so no
 *    configuration is explored twice. Two sound prunings keep it fast: the
 *    key's version only grows along a linearization, so a branch that moves
 *    the key past the version some unplaced operation must see (a read that
 *    returned version 5, a write that got version 7) is cut at once rather
 *    than when that operation's return is reached; and see "Unknown
 *    outcomes" below. Events at equal times count as overlapping (calls sort
 *    before returns), so only what is certainly wrong is flagged.
 * 2. **Unique versions.** Two writes never share a version.
 * 3. **Revision order respects real time.** Each operation that reveals the
 *    revision — a write (its version), a get/CAS conflict that saw version v
 *    (revision >= v), a version read at V (revision >= V), a delete that found
 *    nothing (revision = R) — must agree with real time: when A is known to
 *    have taken effect before B was invoked, B's revision is >= what A
 *    revealed, strictly when B is a write. A write is known to have taken
 *    effect by its return, or by the return of any read that saw its version.
 *    This catches cross-key anomalies that the per-key search cannot see
 *    (a later write on another key getting a smaller version).
 * 4. **Version reads.** A read at V is a deterministic function of the set of
 *    writes to its key: it must return the newest write with version <= V,
 *    and V may not exceed every write's version. (That each write with
 *    version <= V was invoked before the read returned is part of check 3.)
 *
 * Completeness: the four checks together are weaker than one global search.
 * A history could pass them and still not be linearizable in the full model
 * when the cross-key evidence is indirect (say, a cycle through reads of
 * several keys that no single "A took effect before B was invoked" pair
 * exposes). Every anomaly class we test for — stale reads, lost, duplicated
 * and premature writes, non-monotonic versions, wrong CAS — is caught.
 *
 * ## Unknown outcomes
 * An operation whose outcome is unknown (timeout, connection lost) has
 * `returnTime: Infinity` and no `result`. Reads of unknown outcome carry no
 * information and are dropped. A write of unknown outcome may take effect at
 * any point after its invocation or never: its return event sorts last, so the
 * search may linearize it anywhere after its call, and its step always
 * succeeds (applying its effect with an unknown version, or nothing when its
 * CAS condition fails) — linearizing it last is "never happened". The search
 * tries such operations only after every known-outcome candidate at each
 * point, so writes that never happened are rarely placed at all. Open writes
 * can still multiply the work on their key (measured: a 10,000-operation
 * single-key history from 16 clients with ~100 open writes checks in about a
 * second, with ~150 it can run past 30 s), so settle them first with
 * `settleFromLog` from the
 * committed log dump: a write found in the log gets its version (it happened,
 * time still unknown); one not found is dropped. Give deletes a request id:
 * without one they cannot be matched and stay open.
 *
 * @module
 */

/** The KV operations the checker understands, each with its result when known. */
export type KvOp =
  | {
    kind: "get";
    key: string;
    /** Read as of this version (MVCC); absent = the latest value. */
    atVersion?: number;
    /** `version` is the returned value's version (0 when not found). */
    result?: { found: boolean; value?: string; version: number };
  }
  | { kind: "put"; key: string; value: string; result?: { version: number } }
  | {
    kind: "delete";
    key: string;
    /** When not deleted, `version` is the current revision at the time. */
    result?: { deleted: boolean; version: number };
  }
  | {
    kind: "cas";
    key: string;
    value: string;
    /** Write only if the key's current version equals this (0 = the key must be absent). */
    ifVersion: number;
    result?: { ok: true; version: number } | { ok: false; currentVersion: number };
  };

/** When and by whom an operation ran: the history recorder's envelope around a KvOp. */
export interface OpTiming {
  /** The client that issued it; one request in flight per client. */
  clientId: string | number;
  /** When the request was sent (any monotonic unit, e.g. performance.now ms). */
  invokeTime: number;
  /** When the response arrived; Infinity when the outcome is unknown. */
  returnTime: number;
  /** Optional idempotency id, used by `settleFromLog` to match log entries. */
  requestId?: string;
}

/**
 * One recorded operation. Written values must be unique within a history (the
 * checker identifies writes by value). Keys and values are strings: the
 * recorder renders bytes (UTF-8 or hex) before checking.
 */
export type HistoryOp = OpTiming & KvOp;

/** One committed write in a node's log dump, for settling unknown outcomes. */
export interface CommittedWrite {
  /** A put (value set) or a delete (tombstone). */
  kind: "put" | "delete";
  /** The key written, rendered as in the history. */
  key: string;
  /** The value a put wrote (absent for deletes). */
  value?: string;
  /** The revision it committed at. */
  version: number;
  /** The request id it carried, if any. */
  requestId?: string;
}

/** What `settleFromLog` did, and the acknowledged writes the log does not hold (invariant D). */
export interface SettleResult {
  /** The history with open writes resolved: given a result, or removed. */
  history: HistoryOp[];
  /** Open writes found in the log (now carry their version, return time still Infinity). */
  happened: number;
  /** Open writes not in the log, removed. */
  notHappened: number;
  /** Open writes that cannot be matched (deletes without a request id), left open. */
  unresolved: number;
  /** Acknowledged writes with no log entry at their version: lost writes. */
  ackedMissing: HistoryOp[];
}

/**
 * Resolves writes of unknown outcome from the committed log, so the search does
 * not have to guess. Only sound with a complete log (from revision 1, after
 * healing and convergence, before compaction drops entries).
 */
export function settleFromLog(
  history: readonly HistoryOp[],
  log: readonly CommittedWrite[],
): SettleResult {
  const byRequest = new Map<string, CommittedWrite>();
  const byValue = new Map<string, CommittedWrite>();
  const byVersion = new Map<number, CommittedWrite>();
  for (const w of log) {
    if (w.requestId !== undefined && w.requestId !== "") byRequest.set(w.requestId, w);
    if (w.kind === "put" && w.value !== undefined) byValue.set(`${w.key}\u0000${w.value}`, w);
    byVersion.set(w.version, w);
  }
  const out: HistoryOp[] = [];
  let happened = 0;
  let notHappened = 0;
  let unresolved = 0;
  const ackedMissing: HistoryOp[] = [];
  for (const op of history) {
    if (op.kind === "get") {
      out.push(op);
      continue;
    }
    if (op.result !== undefined) {
      const version = writeVersion(op);
      if (version !== undefined) {
        const entry = byVersion.get(version);
        const sameWrite = entry !== undefined && entry.key === op.key &&
          (op.kind === "delete" ? entry.kind === "delete" : entry.value === op.value);
        if (!sameWrite && Number.isFinite(op.returnTime)) ackedMissing.push(op);
      }
      out.push(op);
      continue;
    }
    // Match by request id when the log carries them, else a put or CAS by its unique value;
    // a delete can only be matched by request id.
    let entry: CommittedWrite | undefined;
    if (op.requestId !== undefined && op.requestId !== "") entry = byRequest.get(op.requestId);
    if (entry === undefined && op.kind !== "delete") {
      entry = byValue.get(`${op.key}\u0000${op.value}`);
    }
    if (entry === undefined && op.kind === "delete" && (!op.requestId || byRequest.size === 0)) {
      unresolved++;
      out.push(op);
      continue;
    }
    if (entry === undefined || entry.key !== op.key) {
      notHappened++;
      continue;
    }
    happened++;
    if (op.kind === "put") out.push({ ...op, result: { version: entry.version } });
    else if (op.kind === "cas") out.push({ ...op, result: { ok: true, version: entry.version } });
    else out.push({ ...op, result: { deleted: true, version: entry.version } });
  }
  return { history: out, happened, notHappened, unresolved, ackedMissing };
}

/** Budget and clock for `check`. */
export interface CheckOptions {
  /** Give up after this long (as measured by `now`); a timeout is a failure to look at. */
  timeoutMs?: number;
  /** The clock for the budget, e.g. `() => performance.now()`; required with `timeoutMs`. */
  now?: () => number;
}

/** Counters that show how much work a check did. */
export interface CheckStats {
  /** Operations checked (after dropping reads of unknown outcome). */
  ops: number;
  /** Distinct keys (search partitions). */
  keys: number;
  /** Linearization attempts made by the per-key searches. */
  steps: number;
  /** Configurations stored in the visited cache, summed over keys. */
  cacheEntries: number;
}

/** Which of the documented checks failed. */
export type ViolationCheck = "per-key" | "unique-versions" | "revision-order" | "version-read";

/** Why a history is not linearizable, with the operations that prove it. */
export interface Violation {
  ok: false;
  check: ViolationCheck;
  /** The key involved, when the violation is about one key. */
  key: string | undefined;
  /** A readable explanation naming the operations. */
  reason: string;
  /** Indexes (into the checked history) of the operations involved. */
  opIds: number[];
  /**
   * For per-key failures: the longest partial linearization the search found
   * (operation indexes in order), the key's state after it, the operation that
   * could not be placed next before it returned, and the operations that
   * placing it would strand (they need an older version of the key: usually
   * the stale read or the misplaced write at fault).
   */
  partial?: { linearized: number[]; stuck: number; state: string; stranded: number[] };
  stats: CheckStats;
}

/** The outcome of `check`: linearizable, a violation, or out of budget (treat as failure). */
export type CheckResult =
  | { ok: true; stats: CheckStats }
  | Violation
  | { ok: "timeout"; key: string | undefined; stats: CheckStats };

/** Raised for histories that break the recording rules: a harness bug, not a store bug. */
export class MalformedHistoryError extends RangeError {
  override name = "MalformedHistoryError";
}

/**
 * Checks a recorded history against the KV model (see the module comment for
 * exactly what that means). Operation ids in the result are indexes into
 * `history`.
 */
export function check(history: readonly HistoryOp[], options: CheckOptions = {}): CheckResult {
  const budget = makeBudget(options);
  validate(history);
  const values = new Map<string, number>();
  const ops: Prepared[] = [];
  for (const op of history) {
    const value = writtenValue(op);
    if (value === undefined) continue;
    if (values.has(value)) {
      throw new MalformedHistoryError(`written values must be unique: ${JSON.stringify(value)}`);
    }
    values.set(value, values.size);
  }
  history.forEach((op, id) => {
    if (op.kind === "get" && op.result === undefined) return; // an unanswered read says nothing
    // A read's value id names the write it saw; -2 for a value nobody wrote.
    const value = op.kind === "get" ? op.result!.value : writtenValue(op);
    ops.push({ id, op, valueId: value === undefined ? -1 : values.get(value) ?? -2 });
  });
  const stats: CheckStats = { ops: ops.length, keys: 0, steps: 0, cacheEntries: 0 };
  const fail = (v: Omit<Violation, "ok" | "stats">): Violation => ({ ok: false, ...v, stats });

  // 1. Per key.
  const byKey = new Map<string, Prepared[]>();
  for (const p of ops) {
    if (p.op.kind === "get" && p.op.atVersion !== undefined) continue; // check 4
    let list = byKey.get(p.op.key);
    if (list === undefined) byKey.set(p.op.key, list = []);
    list.push(p);
  }
  stats.keys = byKey.size;
  const keys = [...byKey.keys()].sort();
  for (const key of keys) {
    if (budget.expired()) return { ok: "timeout", key, stats };
    const outcome = searchKey(byKey.get(key)!, values, budget, stats);
    if (outcome === "timeout") return { ok: "timeout", key, stats };
    if (outcome !== "ok") {
      const { linearized, stuck, state, stranded } = outcome;
      const last = linearized.slice(-3).map((id) => describeOp(history[id], id));
      const blame = stranded.length === 0
        ? ""
        : ` without stranding ${
          stranded.slice(0, 3).map((id) => describeOp(history[id], id)).join("; ")
        }, which must see the key at an older version`;
      return fail({
        check: "per-key",
        key,
        reason: `key ${JSON.stringify(key)}: no linearization of its ${
          byKey.get(key)!.length
        } operations. The longest partial linearization places ${linearized.length} (ending ${
          last.length === 0 ? "nowhere" : last.join("; ")
        }), leaving the key ${state}; then ${
          describeOp(history[stuck], stuck)
        } cannot take effect before it returns${blame}`,
        opIds: [...linearized.slice(-3), stuck, ...stranded.slice(0, 3)],
        partial: { linearized, stuck, state, stranded },
      });
    }
  }

  // 2. Unique versions.
  const writes = ops.filter((p) => writeVersion(p.op) !== undefined);
  const seen = new Map<number, Prepared>();
  for (const w of writes) {
    const v = writeVersion(w.op)!;
    const other = seen.get(v);
    if (other !== undefined) {
      return fail({
        check: "unique-versions",
        key: other.op.key === w.op.key ? w.op.key : undefined,
        reason: `two writes got version ${v}: ${describeOp(other.op, other.id)} and ${
          describeOp(w.op, w.id)
        }`,
        opIds: [other.id, w.id],
      });
    }
    seen.set(v, w);
  }

  // 3. Revision order against real time.
  const order = checkRevisionOrder(ops, seen);
  if (order !== undefined) return fail(order);

  // 4. Version reads.
  if (budget.expired()) return { ok: "timeout", key: undefined, stats };
  const reads = checkVersionReads(ops, writes);
  if (reads !== undefined) return fail(reads);
  return { ok: true, stats };
}

/** A human rendering of one operation, e.g. `#4 client 2 put("k", "v1") -> @7 [10, 15]`. */
export function describeOp(op: HistoryOp, id?: number): string {
  const k = JSON.stringify(op.key);
  let call: string;
  let result: string;
  switch (op.kind) {
    case "get": {
      call = op.atVersion === undefined ? `get(${k})` : `get(${k}, at ${op.atVersion})`;
      const r = op.result;
      result = r === undefined
        ? "unknown"
        : r.found
        ? `${JSON.stringify(r.value)} @${r.version}`
        : "not found";
      break;
    }
    case "put":
      call = `put(${k}, ${JSON.stringify(op.value)})`;
      result = op.result === undefined ? "unknown" : `@${op.result.version}`;
      break;
    case "delete":
      call = `delete(${k})`;
      result = op.result === undefined
        ? "unknown"
        : op.result.deleted
        ? `deleted @${op.result.version}`
        : `nothing to delete (revision ${op.result.version})`;
      break;
    case "cas":
      call = `cas(${k}, ${JSON.stringify(op.value)}, if ${op.ifVersion})`;
      result = op.result === undefined
        ? "unknown"
        : op.result.ok
        ? `ok @${op.result.version}`
        : `conflict (current ${op.result.currentVersion})`;
      break;
  }
  const settled = op.result !== undefined && op.returnTime === Infinity ? " (settled)" : "";
  const when = `[${op.invokeTime}, ${op.returnTime === Infinity ? "open" : op.returnTime}]`;
  return `${
    id === undefined ? "" : `#${id} `
  }client ${op.clientId} ${call} -> ${result}${settled} ${when}`;
}

// ---------------------------------------------------------------- internals

interface Prepared {
  /** Index in the caller's history. */
  id: number;
  op: HistoryOp;
  /** Interned value written or read (-1 for none, -2 for a read of a value nobody wrote). */
  valueId: number;
}

interface Budget {
  expired(): boolean;
}

function makeBudget(options: CheckOptions): Budget {
  const { timeoutMs, now } = options;
  if (timeoutMs === undefined) return { expired: () => false };
  if (now === undefined) throw new RangeError("check: timeoutMs needs a now() clock");
  const deadline = now() + timeoutMs;
  return { expired: () => now() > deadline };
}

/** The version a write got, when it is a write whose version is known. */
function writeVersion(op: HistoryOp): number | undefined {
  switch (op.kind) {
    case "put":
      return op.result?.version;
    case "delete":
      return op.result?.deleted ? op.result.version : undefined;
    case "cas":
      return op.result?.ok ? op.result.version : undefined;
    default:
      return undefined;
  }
}

/** The value a put or CAS writes (undefined for reads and deletes). */
function writtenValue(op: HistoryOp): string | undefined {
  return op.kind === "put" || op.kind === "cas" ? op.value : undefined;
}

/** Orders times where Infinity (an open operation) may appear on both sides. */
function compareTimes(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function validate(history: readonly HistoryOp[]): void {
  const byClient = new Map<string | number, HistoryOp[]>();
  history.forEach((op, id) => {
    const where = `history[${id}]`;
    if (!Number.isFinite(op.invokeTime)) {
      throw new MalformedHistoryError(`${where}: bad invokeTime`);
    }
    if (!(op.returnTime >= op.invokeTime)) {
      throw new MalformedHistoryError(`${where}: returnTime precedes invokeTime`);
    }
    if (op.returnTime !== Infinity && op.result === undefined) {
      throw new MalformedHistoryError(`${where}: a returned operation needs its result`);
    }
    if (op.returnTime === Infinity && op.result !== undefined && op.kind === "get") {
      throw new MalformedHistoryError(`${where}: an open read cannot carry a result`);
    }
    if (op.kind === "get" && op.result?.found === true && op.result.value === undefined) {
      throw new MalformedHistoryError(`${where}: a found read needs its value`);
    }
    let list = byClient.get(op.clientId);
    if (list === undefined) byClient.set(op.clientId, list = []);
    list.push(op);
  });
  for (const [client, list] of byClient) {
    list.sort((a, b) => a.invokeTime - b.invokeTime);
    for (let i = 1; i < list.length; i++) {
      const prev = list[i - 1];
      if (prev.returnTime !== Infinity && prev.returnTime > list[i].invokeTime) {
        throw new MalformedHistoryError(
          `client ${client} has two requests in flight at ${list[i].invokeTime}`,
        );
      }
    }
  }
}

// ---- the per-key model

/**
 * One key's state. `version` is the version of the key's latest write
 * (tombstones included; 0 before any write), or -1 when that write's outcome
 * was unknown — then the version is only known to exceed `floor`.
 */
interface KeyState {
  readonly exists: boolean;
  readonly value: number;
  readonly version: number;
  readonly floor: number;
  readonly hash: number;
}

function keyState(exists: boolean, value: number, version: number, floor: number): KeyState {
  let h = Math.imul((exists ? 1 : 2) ^ (value + 3), 0x85ebca6b);
  h = Math.imul(h ^ (version + 7) ^ (h >>> 13), 0xc2b2ae35);
  h = Math.imul(h ^ (floor + 11) ^ (h >>> 16), 0x27d4eb2f);
  return { exists, value, version, floor, hash: h >>> 0 };
}

const initialState = keyState(false, -1, 0, 0);

function sameState(a: KeyState, b: KeyState): boolean {
  return a.exists === b.exists && a.value === b.value && a.version === b.version &&
    a.floor === b.floor;
}

/** The smallest version a new write on top of `s` could have, minus one. */
function writeFloor(s: KeyState): number {
  // An unknown version u > floor means u >= floor + 1, and a newer write exceeds u.
  return s.version >= 0 ? s.version : s.floor + 1;
}

/** Whether the key's latest write could have version `v`. */
function versionCouldBe(s: KeyState, v: number): boolean {
  return s.version >= 0 ? s.version === v : v > s.floor;
}

/** `s` with an unknown version now known to be `v` (assumes versionCouldBe). */
function learn(s: KeyState, v: number): KeyState {
  return s.version >= 0 ? s : keyState(s.exists, s.value, v, v);
}

/** The state after `p` takes effect on `s`, or null when its result contradicts `s`. */
function step(s: KeyState, p: Prepared): KeyState | null {
  const op = p.op;
  switch (op.kind) {
    case "get": {
      const r = op.result!;
      if (!r.found) return s.exists ? null : s;
      // Values are unique, so equal ids mean the same write.
      return s.exists && s.value === p.valueId && versionCouldBe(s, r.version)
        ? learn(s, r.version)
        : null;
    }
    case "put": {
      if (op.result === undefined) return keyState(true, p.valueId, -1, writeFloor(s));
      const v = op.result.version;
      return v > writeFloor(s) ? keyState(true, p.valueId, v, v) : null;
    }
    case "delete": {
      const r = op.result;
      if (r === undefined) return s.exists ? keyState(false, -1, -1, writeFloor(s)) : s;
      // Nothing deleted: the revision it reports is at least the key's latest write.
      if (!r.deleted) return !s.exists && r.version >= writeFloor(s) ? s : null;
      return s.exists && r.version > writeFloor(s)
        ? keyState(false, -1, r.version, r.version)
        : null;
    }
    case "cas": {
      const r = op.result;
      // The compared version: 0 for an absent key, else the latest write's.
      const matches = s.exists ? versionCouldBe(s, op.ifVersion) : op.ifVersion === 0;
      const base = s.exists && matches ? learn(s, op.ifVersion) : s;
      if (r === undefined) {
        return matches ? keyState(true, p.valueId, -1, writeFloor(base)) : s;
      }
      if (r.ok) {
        return matches && r.version > writeFloor(base)
          ? keyState(true, p.valueId, r.version, r.version)
          : null;
      }
      const c = r.currentVersion;
      if (c === op.ifVersion) return null;
      if (!s.exists) return c === 0 ? s : null;
      return versionCouldBe(s, c) ? learn(s, c) : null;
    }
  }
}

function describeState(s: KeyState, values: Map<string, number>): string {
  const version = s.version >= 0 ? `${s.version}` : `unknown (> ${s.floor})`;
  if (!s.exists) return s.version === 0 ? "absent (never written)" : `absent (deleted @${version})`;
  let value = "?";
  for (const [text, id] of values) {
    if (id === s.value) {
      value = JSON.stringify(text);
      break;
    }
  }
  return `holding ${value} @${version}`;
}

// ---- the search

interface EventNode {
  /** Index into the partition's op list. */
  op: number;
  isCall: boolean;
  /** For a call: its return node. */
  match: EventNode | null;
  prev: EventNode | null;
  next: EventNode | null;
}

/** An immutable stack frame, so the deepest stack can be kept by reference. */
interface Frame {
  call: EventNode;
  before: KeyState;
  /** The candidate pass the call was placed in, to resume there on backtracking. */
  pass: 1 | 2;
  depth: number;
  parent: Frame | null;
}

interface CacheEntry {
  bits: Uint32Array;
  state: KeyState;
}

type SearchOutcome =
  | "ok"
  | "timeout"
  | { linearized: number[]; stuck: number; state: string; stranded: number[] };

/**
 * The highest version the key's latest write may have when `p` takes effect
 * (Infinity when unbounded). A read that saw version 5 must take effect
 * while the key is at 5; a write that got 7 while the key is below 7. As the
 * key's version only grows along a linearization, once the key is past an
 * unplaced operation's ceiling that branch is dead — this prunes the search
 * long before the stranded operation's return is reached.
 */
function versionCeiling(p: Prepared): number {
  const op = p.op;
  switch (op.kind) {
    case "get":
      return op.result!.found ? op.result!.version : Infinity;
    case "put":
      return op.result === undefined ? Infinity : op.result.version - 1;
    case "delete":
      if (op.result === undefined) return Infinity;
      return op.result.deleted ? op.result.version - 1 : op.result.version;
    case "cas": {
      const r = op.result;
      if (r === undefined) return Infinity;
      if (r.ok) return op.ifVersion > 0 ? Math.min(op.ifVersion, r.version - 1) : r.version - 1;
      return r.currentVersion > 0 ? r.currentVersion : Infinity;
    }
  }
}

/** The least version the key's latest write can have in state `s`. */
function versionAtLeast(s: KeyState): number {
  return s.version >= 0 ? s.version : s.floor + 1;
}

/** Counts of unplaced operations by version ceiling (a Fenwick tree over distinct ceilings). */
class CeilingCounts {
  readonly #ceilings: number[];
  readonly #tree: Int32Array;

  constructor(ceilings: number[]) {
    this.#ceilings = [...new Set(ceilings.filter((c) => c !== Infinity))].sort((a, b) => a - b);
    this.#tree = new Int32Array(this.#ceilings.length + 1);
    for (const c of ceilings) this.add(c, 1);
  }

  add(ceiling: number, delta: number): void {
    if (ceiling === Infinity) return;
    for (let i = this.#below(ceiling) + 1; i < this.#tree.length; i += i & -i) {
      this.#tree[i] += delta;
    }
  }

  /** How many counted operations have a ceiling below `version`. */
  countBelow(version: number): number {
    let sum = 0;
    for (let i = this.#below(version); i > 0; i -= i & -i) sum += this.#tree[i];
    return sum;
  }

  /** Number of distinct ceilings below `version`. */
  #below(version: number): number {
    let lo = 0;
    let hi = this.#ceilings.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#ceilings[mid] < version) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** Mixes an op index into a 32-bit value; XOR of these is the linearized set's hash. */
function bitHash(i: number): number {
  let z = Math.imul(i + 0x9e3779b9, 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

function searchKey(
  ops: Prepared[],
  values: Map<string, number>,
  budget: Budget,
  stats: CheckStats,
): SearchOutcome {
  const n = ops.length;
  // Events in time order; at equal times calls come first (they overlap, the
  // permissive reading: we only flag what is certainly wrong).
  const events: { time: number; isCall: boolean; op: number }[] = [];
  ops.forEach((p, i) => {
    events.push({ time: p.op.invokeTime, isCall: true, op: i });
    events.push({ time: p.op.returnTime, isCall: false, op: i });
  });
  events.sort((a, b) =>
    compareTimes(a.time, b.time) || (a.isCall === b.isCall ? a.op - b.op : a.isCall ? -1 : 1)
  );
  const head: EventNode = { op: -1, isCall: false, match: null, prev: null, next: null };
  const calls = new Array<EventNode>(n);
  const returns = new Array<EventNode>(n);
  let tail = head;
  for (const e of events) {
    const node: EventNode = { op: e.op, isCall: e.isCall, match: null, prev: tail, next: null };
    tail.next = node;
    tail = node;
    (e.isCall ? calls : returns)[e.op] = node;
  }
  for (let i = 0; i < n; i++) calls[i].match = returns[i];

  // Operations of unknown outcome can always take effect later (or never), so
  // the search tries them only after every known-outcome candidate (pass 2).
  const unknown = ops.map((p) => p.op.result === undefined);
  const anyUnknown = unknown.includes(true);
  const words = (n + 31) >>> 5;
  const bits = new Uint32Array(words);
  let bitsHash = 0;
  const hashes = Uint32Array.from({ length: n }, (_, i) => bitHash(i));
  const place = (i: number, on: boolean) => {
    if (on) bits[i >>> 5] |= 1 << (i & 31);
    else bits[i >>> 5] &= ~(1 << (i & 31));
    bitsHash ^= hashes[i];
  };
  const cache = new Map<number, CacheEntry[]>();
  /** True when this (linearized set, state) was visited before; else records it. */
  const seenBefore = (s: KeyState): boolean => {
    const h = (bitsHash ^ Math.imul(s.hash, 0x9e3779b1)) >>> 0;
    let bucket = cache.get(h);
    if (bucket !== undefined) {
      outer: for (const entry of bucket) {
        if (!sameState(entry.state, s)) continue;
        for (let w = 0; w < words; w++) if (entry.bits[w] !== bits[w]) continue outer;
        return true;
      }
    } else {
      cache.set(h, bucket = []);
    }
    bucket.push({ bits: bits.slice(), state: s });
    stats.cacheEntries++;
    return false;
  };

  const ceilings = ops.map(versionCeiling);
  const unplaced = new CeilingCounts(ceilings);
  /** The last step rejected for stranding others, and the version it would have reached. */
  let lastPrune: { op: number; version: number } | undefined;

  let state = initialState;
  let top = null as Frame | null;
  let best:
    | { frame: Frame | null; stuck: number; state: KeyState; prunedAt: number | undefined }
    | undefined;
  let pass: 1 | 2 = 1;
  let node = head.next;
  let iterations = 0;
  while (head.next !== null) {
    if ((++iterations & 0x3ff) === 0 && budget.expired()) return "timeout";
    const current = node!;
    if (current.isCall) {
      const i = current.op;
      if (unknown[i] !== (pass === 2)) {
        node = current.next;
        continue;
      }
      stats.steps++;
      const next = step(state, ops[i]);
      if (next !== null) {
        unplaced.add(ceilings[i], -1);
        const strands = unplaced.countBelow(versionAtLeast(next)) > 0;
        if (strands) lastPrune = { op: i, version: versionAtLeast(next) };
        place(i, true);
        if (!strands && !seenBefore(next)) {
          top = { call: current, before: state, pass, depth: (top?.depth ?? 0) + 1, parent: top };
          state = next;
          lift(current);
          pass = 1;
          node = head.next;
          continue;
        }
        place(i, false);
        unplaced.add(ceilings[i], 1);
      }
      node = current.next;
      continue;
    }
    // A return whose operation is not placed yet: once both passes have
    // tried every candidate before it, this branch is dead.
    if (pass === 1 && anyUnknown) {
      pass = 2;
      node = head.next;
      continue;
    }
    if (best === undefined || (top?.depth ?? 0) > (best.frame?.depth ?? 0)) {
      const prunedAt = lastPrune?.op === current.op ? lastPrune.version : undefined;
      best = { frame: top, stuck: current.op, state, prunedAt };
    }
    if (top === null) return failure(ops, ceilings, best, values);
    const i = top.call.op;
    place(i, false);
    unplaced.add(ceilings[i], 1);
    state = top.before;
    unlift(top.call);
    node = top.call.next;
    pass = top.pass;
    top = top.parent;
  }
  return "ok";
}

/** The search's report when no linearization exists: its deepest point and what blocked it. */
function failure(
  ops: Prepared[],
  ceilings: number[],
  best: { frame: Frame | null; stuck: number; state: KeyState; prunedAt: number | undefined },
  values: Map<string, number>,
): SearchOutcome {
  const placed = new Set<number>();
  for (let f = best.frame; f !== null; f = f.parent) placed.add(f.call.op);
  const { prunedAt, stuck } = best;
  // The operations that needed the key older than the stuck one would leave it.
  const stranded = prunedAt === undefined
    ? []
    : ops.filter((_, j) => !placed.has(j) && j !== stuck && ceilings[j] < prunedAt)
      .map((p) => p.id);
  return {
    linearized: [...placed].reverse().map((j) => ops[j].id),
    stuck: ops[stuck].id,
    state: describeState(best.state, values),
    stranded,
  };
}

/** Takes a call and its return out of the event list (the op is linearized). */
function lift(call: EventNode): void {
  call.prev!.next = call.next;
  if (call.next !== null) call.next.prev = call.prev;
  const ret = call.match!;
  ret.prev!.next = ret.next;
  if (ret.next !== null) ret.next.prev = ret.prev;
}

/** Undoes `lift` (callers undo in reverse order, so neighbours are intact). */
function unlift(call: EventNode): void {
  const ret = call.match!;
  ret.prev!.next = ret;
  if (ret.next !== null) ret.next.prev = ret;
  call.prev!.next = call;
  if (call.next !== null) call.next.prev = call;
}

// ---- check 3: revision order

function checkRevisionOrder(
  ops: Prepared[],
  writesByVersion: Map<number, Prepared>,
): Omit<Violation, "ok" | "stats"> | undefined {
  // When each write is known to have taken effect: its return, or the return
  // of the first read that saw its version.
  const effective = new Map<Prepared, number>();
  for (const w of writesByVersion.values()) effective.set(w, w.op.returnTime);
  const observe = (version: number, key: string, at: number) => {
    const w = writesByVersion.get(version);
    if (w !== undefined && w.op.key === key && at < effective.get(w)!) effective.set(w, at);
  };
  for (const p of ops) {
    const op = p.op;
    if (op.kind === "get" && op.result?.found) observe(op.result.version, op.key, op.returnTime);
    if (op.kind === "cas" && op.result !== undefined) {
      if (!op.result.ok) observe(op.result.currentVersion, op.key, op.returnTime);
      else observe(op.ifVersion, op.key, op.returnTime);
    }
  }
  for (const [w, at] of effective) {
    if (at < w.op.invokeTime) {
      return {
        check: "revision-order",
        key: w.op.key,
        reason: `${describeOp(w.op, w.id)} was observed at ${at}, before it was invoked`,
        opIds: [w.id],
      };
    }
  }

  // What each operation reveals about the revision ("at least" this much)
  // and when that became true.
  const lower: { at: number; revision: number; p: Prepared }[] = [];
  // Operations whose revision is bounded below by everything that came before.
  const upper: { invoke: number; revision: number; strict: boolean; p: Prepared }[] = [];
  for (const p of ops) {
    const op = p.op;
    const r = op.result;
    if (r === undefined) continue;
    const version = writeVersion(op);
    if (version !== undefined) {
      lower.push({ at: effective.get(p)!, revision: version, p });
      upper.push({ invoke: op.invokeTime, revision: version, strict: true, p });
    } else if (op.kind === "delete") {
      lower.push({ at: op.returnTime, revision: op.result!.version, p });
      upper.push({ invoke: op.invokeTime, revision: op.result!.version, strict: false, p });
    } else if (op.kind === "get" && op.atVersion !== undefined) {
      // A version read is served only once the revision has reached it.
      lower.push({ at: op.returnTime, revision: op.atVersion, p });
    } else if (op.kind === "get" && op.result!.found) {
      lower.push({ at: op.returnTime, revision: op.result!.version, p });
    } else if (op.kind === "cas" && !op.result!.ok) {
      lower.push({ at: op.returnTime, revision: op.result!.currentVersion, p });
    }
  }
  lower.sort((a, b) => compareTimes(a.at, b.at));
  upper.sort((a, b) => compareTimes(a.invoke, b.invoke));
  let li = 0;
  let max: (typeof lower)[number] | undefined;
  for (const u of upper) {
    while (li < lower.length && lower[li].at < u.invoke) {
      if (max === undefined || lower[li].revision > max.revision) max = lower[li];
      li++;
    }
    if (max === undefined) continue;
    const bad = u.strict ? max.revision >= u.revision : max.revision > u.revision;
    if (bad) {
      return {
        check: "revision-order",
        key: max.p.op.key === u.p.op.key ? u.p.op.key : undefined,
        reason: `${describeOp(u.p.op, u.p.id)} was invoked after ${
          describeOp(max.p.op, max.p.id)
        } had shown revision ${max.revision}, yet its revision ${u.revision} is ${
          u.strict ? "not greater" : "smaller"
        }`,
        opIds: [max.p.id, u.p.id],
      };
    }
  }
  return undefined;
}

// ---- check 4: version reads

function checkVersionReads(
  ops: Prepared[],
  writes: Prepared[],
): Omit<Violation, "ok" | "stats"> | undefined {
  const sorted = [...writes].sort((a, b) => writeVersion(a.op)! - writeVersion(b.op)!);
  const perKey = new Map<string, Prepared[]>();
  for (const w of sorted) {
    let list = perKey.get(w.op.key);
    if (list === undefined) perKey.set(w.op.key, list = []);
    list.push(w);
  }
  // Open writes with unknown version could sit anywhere in a key's timeline.
  const openPuts = new Map<string, Set<string>>();
  const openDeletes = new Set<string>();
  let anyOpenWrite = false;
  for (const p of ops) {
    const op = p.op;
    if (op.kind === "get" || op.result !== undefined) continue;
    anyOpenWrite = true;
    if (op.kind === "delete") openDeletes.add(op.key);
    else {
      let set = openPuts.get(op.key);
      if (set === undefined) openPuts.set(op.key, set = new Set());
      set.add(op.value);
    }
  }
  const maxVersion = sorted.length === 0 ? 0 : writeVersion(sorted[sorted.length - 1].op)!;
  const lastAtOrBelow = (list: Prepared[], v: number): number => {
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (writeVersion(list[mid].op)! <= v) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  };

  for (const p of ops) {
    const op = p.op;
    if (op.kind !== "get" || op.atVersion === undefined || op.result === undefined) continue;
    const at = op.atVersion;
    const r = op.result;
    const read = describeOp(op, p.id);
    const violation = (reason: string, others: Prepared[] = []) => ({
      check: "version-read" as const,
      key: op.key,
      reason: `${read}: ${reason}`,
      opIds: [...others.map((o) => o.id), p.id],
    });
    // (That every write at or below `at` was invoked before the read returned
    // is part of check 3: the read shows revision >= at.)
    if (at > maxVersion && !anyOpenWrite) {
      return violation(`answered for revision ${at}, beyond every write (${maxVersion})`);
    }
    const list = perKey.get(op.key) ?? [];
    const newest = lastAtOrBelow(list, at);
    const expected = newest >= 0 ? list[newest] : undefined;
    if (r.found) {
      if (r.version > at) return violation(`returned version ${r.version} above ${at}`);
      if (expected !== undefined && writeVersion(expected.op)! > r.version) {
        return violation(
          `missed ${describeOp(expected.op, expected.id)}, the newest write at or below ${at}`,
          [expected],
        );
      }
      if (expected !== undefined && writeVersion(expected.op) === r.version) {
        if (writtenValue(expected.op) !== r.value) {
          return violation(`version ${r.version} was written by another operation`, [expected]);
        }
        continue;
      }
      // No known write to this key has the returned version.
      if (!openPuts.get(op.key)?.has(r.value!)) {
        return violation(`no write to ${JSON.stringify(op.key)} produced version ${r.version}`);
      }
    } else if (
      expected !== undefined && expected.op.kind !== "delete" && !openDeletes.has(op.key)
    ) {
      return violation(
        `found nothing, but ${
          describeOp(expected.op, expected.id)
        } is the newest write at or below ${at}`,
        [expected],
      );
    }
  }
  return undefined;
}
