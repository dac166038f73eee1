/**
 * Key-space commands: DEL, UNLINK, EXISTS, TOUCH, TYPE, RENAME, RENAMENX,
 * EXPIRE/PEXPIRE and
 * EXPIREAT/PEXPIREAT (NX/XX/GT/LT), PERSIST, TTL, PTTL, EXPIRETIME,
 * PEXPIRETIME, SCAN (MATCH, COUNT), KEYS (capped) and DBSIZE. Expiry
 * changes rewrite the value with the new deadline by compare-and-set, so a
 * concurrent write is never overwritten with a stale value.
 *
 * @module
 */

import { IoTurns } from "../common/time_slice.ts";
import { validateKey } from "../server/validation.ts";
import { compareBytes, concatBytes, prefixEnd } from "../common/bytes.ts";
import { failpoint } from "../common/failpoints.ts";
import {
  maxRespConcurrentCommands,
  maxRespCountedKeys,
  maxRespKeysReply,
  maxRespWriteRunBytes,
  maxScanLimit,
} from "../common/limits.ts";
import type { ReadConsistency } from "../node/kv_node.ts";
import type { KeyValue } from "../node/state_machine.ts";
import type { TxnWrite } from "../node/command.ts";
import { readModifyWrite, readModifyWriteKeys } from "./cas.ts";
import {
  argBigInteger,
  argInteger,
  argText,
  argWord,
  type CommandContext,
  type CommandSpec,
  int64Max,
  int64Min,
  type Overlap,
  ReplyError,
} from "./command_table.ts";
import { globMatch, literalPrefix } from "./glob.ts";
import type { RespStore } from "./store.ts";

/**
 * DEL/UNLINK: the keys' deletes in one group of the proposal batcher, so
 * one Raft entry: readers see all of them or none, as in Redis (up to
 * maxRespConcurrentCommands keys; more go as several such entries). A key
 * over the size limit fails the command before anything is deleted; a key
 * no write can create (store.ts, neverStored) counts as absent.
 */
async function del(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const keys = args.slice(1);
  for (const key of keys) if (key.length > 0) validateKey(key);
  const store = ctx.store;
  // A one-key DEL may run inside a pipelined run's group already (delOverlap).
  if (keys.length === 1) {
    ctx.out.integer(await store.delete(keys[0]) ? 1 : 0);
    return;
  }
  let n = 0;
  for (let from = 0; from < keys.length;) {
    // A group must fit one batch: thousands of keys go as several entries, in order.
    let to = from + 1;
    let bytes = keys[from].length;
    while (
      to < keys.length && to - from < maxRespConcurrentCommands &&
      bytes + keys[to].length <= maxRespWriteRunBytes
    ) bytes += keys[to++].length;
    const group = keys.slice(from, to);
    const deleted = await Promise.all(store.writeGroup(() => group.map((k) => store.delete(k))));
    n += deleted.filter((d) => d).length;
    from = to;
  }
  ctx.out.integer(n);
}

/** EXISTS: how many of the keys (repeats counted) exist, all read at one revision. */
async function exists(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const kvs = await ctx.store.getMany(args.slice(1), ctx.consistency);
  ctx.out.integer(kvs.filter((kv) => kv !== undefined).length);
}

/**
 * RENAME / RENAMENX src dst: moves the value and its expiry in one
 * transaction that deletes src only at the version read (and, for RENAMENX,
 * writes dst only while it is absent). Renaming a key to itself changes
 * nothing, as in Redis.
 */
async function rename(
  ctx: CommandContext,
  args: Uint8Array[],
  onlyIfAbsent: boolean,
): Promise<void> {
  const [, src, dst] = args;
  validateKey(dst);
  const same = compareBytes(src, dst) === 0;
  const done = await readModifyWriteKeys(ctx.store, [src, dst], ([from, to]) => {
    if (!from) throw new ReplyError("ERR no such key");
    if (same || (onlyIfAbsent && to)) return { writes: [], result: same && !onlyIfAbsent };
    const writes: TxnWrite[] = [
      { key: src, value: undefined, expiresAtMs: 0, ifVersion: from.version },
      { key: dst, value: from.value, expiresAtMs: from.expiresAtMs },
    ];
    if (onlyIfAbsent) writes[1].ifVersion = 0;
    return { writes, result: true };
  });
  if (onlyIfAbsent) ctx.out.integer(done ? 1 : 0);
  else ctx.out.simple("OK");
}

/** TYPE: every value is a string here; "none" for a key that does not exist. */
async function type(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const kv = await ctx.store.get(args[1], ctx.consistency);
  ctx.out.simple(kv ? "string" : "none");
}

/**
 * EXPIRE/PEXPIRE key amount (relative to now) and EXPIREAT/PEXPIREAT key
 * time (a Unix time); `unitMs` is the unit's length in ms. A deadline
 * already past deletes the key.
 */
async function expire(
  ctx: CommandContext,
  args: Uint8Array[],
  unitMs: number,
  absolute = false,
): Promise<void> {
  // As Redis 7: the options are checked first; they may repeat; NX goes with no other, GT not
  // with LT.
  const flags = new Set<string>();
  for (const arg of args.slice(3)) {
    const f = argWord(arg);
    if (!["NX", "XX", "GT", "LT"].includes(f)) {
      throw new ReplyError(`ERR Unsupported option ${argText(arg)}`);
    }
    flags.add(f);
  }
  if (flags.has("NX") && flags.size > 1) {
    throw new ReplyError("ERR NX and XX, GT or LT options at the same time are not compatible");
  }
  if (flags.has("GT") && flags.has("LT")) {
    throw new ReplyError("ERR GT and LT options at the same time are not compatible");
  }
  // As Redis, exactly in 64 bits: an amount whose milliseconds, or whose deadline, leaves the
  // signed 64-bit range is an error. A deadline far in the past deletes the key; one past
  // 2^53 ms cannot be a point in time here: an error too.
  const invalid = () =>
    new ReplyError(`ERR invalid expire time in '${argText(args[0]).toLowerCase()}' command`);
  let ms = argBigInteger(args[2]);
  if (unitMs === 1_000) {
    if (ms > int64Max / 1_000n || ms < int64Min / 1_000n) throw invalid();
    ms *= 1_000n;
  }
  const base = absolute ? 0n : BigInt(Math.floor(ctx.store.node.clock.wallMs()));
  if (ms > int64Max - base || ms + base > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid();
  // Far in the past is simply past: keep it a Number.
  const amountMs = ms < -(2n ** 52n) ? -(2 ** 52) : Number(ms);
  const set = await readModifyWrite(ctx.store, args[1], (cur) => {
    if (!cur) return { action: { kind: "none" }, result: 0 };
    const nowMs = ctx.store.node.clock.wallMs();
    const at = absolute ? amountMs : nowMs + amountMs;
    const has = cur.expiresAtMs > 0;
    // A key without a TTL counts as expiring never: GT never moves it, LT always does.
    const allowed = (!flags.has("NX") || !has) && (!flags.has("XX") || has) &&
      (!flags.has("GT") || (has && at > cur.expiresAtMs)) &&
      (!flags.has("LT") || !has || at < cur.expiresAtMs);
    if (!allowed) return { action: { kind: "none" }, result: 0 };
    if (at <= nowMs) return { action: { kind: "delete" }, result: 1 };
    return { action: { kind: "put", value: cur.value, expiresAtMs: at }, result: 1 };
  });
  ctx.out.integer(set);
}

async function persist(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const n = await readModifyWrite(
    ctx.store,
    args[1],
    (cur) =>
      cur && cur.expiresAtMs > 0
        ? { action: { kind: "put", value: cur.value, expiresAtMs: 0 }, result: 1 }
        : { action: { kind: "none" }, result: 0 },
  );
  ctx.out.integer(n);
}

async function ttl(ctx: CommandContext, args: Uint8Array[], unitMs: number): Promise<void> {
  const kv = await ctx.store.get(args[1], ctx.consistency);
  if (!kv) ctx.out.integer(-2);
  else if (kv.expiresAtMs === 0) ctx.out.integer(-1);
  else {
    const left = Math.max(0, kv.expiresAtMs - ctx.store.node.clock.wallMs());
    ctx.out.integer(unitMs === 1 ? left : Math.round(left / 1000));
  }
}

/** EXPIRETIME / PEXPIRETIME: the key's deadline as a Unix time; -1 without one, -2 when absent. */
async function expireTime(ctx: CommandContext, args: Uint8Array[], unitMs: number): Promise<void> {
  const kv = await ctx.store.get(args[1], ctx.consistency);
  if (!kv) ctx.out.integer(-2);
  else if (kv.expiresAtMs === 0) ctx.out.integer(-1);
  // Seconds are rounded to the nearest, as Redis does.
  else ctx.out.integer(unitMs === 1 ? kv.expiresAtMs : Math.floor((kv.expiresAtMs + 500) / 1000));
}

/**
 * One page of keys after `after` (exclusive) under `prefix`, at most
 * `limit`; `next` is the last key visited when more may follow.
 */
export async function scanKeys(
  store: RespStore,
  opts: {
    prefix: Uint8Array;
    after: Uint8Array | undefined;
    limit: number;
    consistency: ReadConsistency;
    version?: number;
    ttlAtMs?: number;
  },
): Promise<{ kvs: KeyValue[]; next: Uint8Array | undefined; version: number }> {
  const { prefix, after } = opts;
  let start = prefix;
  if (after) {
    const successor = concatBytes(after, new Uint8Array([0]));
    if (compareBytes(successor, start) > 0) start = successor;
  }
  const end = prefix.length > 0 ? prefixEnd(prefix) : undefined;
  if (end && compareBytes(start, end) >= 0) return { kvs: [], next: undefined, version: 0 };
  const r = await store.node.scan({
    start,
    end,
    limit: opts.limit,
    keysOnly: true,
    consistency: opts.consistency,
    version: opts.version,
    ttlAtMs: opts.ttlAtMs,
  });
  const last = r.kvs[r.kvs.length - 1];
  return { kvs: r.kvs, next: r.more && last ? last.key : undefined, version: r.version };
}

async function scan(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const cursor = argText(args[1]);
  const after = ctx.store.scanCursors.resume(cursor);
  let pattern: Uint8Array | undefined;
  let count = 10;
  for (let i = 2; i < args.length; i++) {
    const w = argWord(args[i]);
    if (w === "MATCH" && i + 1 < args.length) pattern = args[++i];
    else if (w === "COUNT" && i + 1 < args.length) {
      count = argInteger(args[++i]);
      if (count < 1) throw new ReplyError("ERR syntax error");
    } else if (w === "TYPE" && i + 1 < args.length) {
      if (argWord(args[++i]) !== "STRING") count = 0;
    } else throw new ReplyError("ERR syntax error");
  }
  if (count === 0) {
    ctx.out.arrayHeader(2).bulk("0").arrayHeader(0);
    return;
  }
  const page = await scanKeys(ctx.store, {
    prefix: pattern ? literalPrefix(pattern) : new Uint8Array(),
    after,
    limit: Math.min(count, maxScanLimit),
    consistency: ctx.consistency,
  });
  const keys = page.kvs.map((kv) => kv.key).filter((k) => !pattern || globMatch(pattern, k));
  ctx.out.arrayHeader(2).bulk(page.next ? ctx.store.scanCursors.issue(page.next, cursor) : "0")
    .bulkArray(keys);
}

async function keys(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const pattern = args[1];
  const found: Uint8Array[] = [];
  await walkKeys(ctx.store, literalPrefix(pattern), ctx.consistency, (kvs) => {
    for (const kv of kvs) {
      if (!globMatch(pattern, kv.key)) continue;
      if (found.length === maxRespKeysReply) {
        throw new ReplyError(
          `ERR KEYS matched more than ${maxRespKeysReply} keys; iterate with SCAN instead`,
        );
      }
      found.push(kv.key);
    }
    return true;
  });
  ctx.out.bulkArray(found);
}

/** Counts user keys (up to maxRespCountedKeys), all at one revision. */
export async function countKeys(store: RespStore, consistency: ReadConsistency): Promise<number> {
  return (await keyspaceCounts(store, consistency)).keys;
}

/**
 * INFO keyspace's figures, at one revision: keys, keys with a TTL, and
 * their mean time left in ms (Redis's avg_ttl; 0 without any).
 */
export async function keyspaceCounts(
  store: RespStore,
  consistency: ReadConsistency,
): Promise<{ keys: number; expires: number; avgTtlMs: number }> {
  let keys = 0;
  let expires = 0;
  let ttlSum = 0;
  const nowMs = store.node.clock.wallMs();
  await walkKeys(store, new Uint8Array(), consistency, (kvs) => {
    keys += kvs.length;
    for (const kv of kvs) {
      if (kv.expiresAtMs === 0) continue;
      expires++;
      ttlSum += Math.max(0, kv.expiresAtMs - nowMs);
    }
    return keys < maxRespCountedKeys;
  });
  return { keys, expires, avgTtlMs: expires === 0 ? 0 : Math.round(ttlSum / expires) };
}

/**
 * Keys per page of a walk: about 1-2 ms of the node's thread each, so the
 * walk can take a turn of the event loop at least every ioTurnEveryMs.
 */
const walkPageKeys = 2_000;

/**
 * Walks the keys under `prefix` page by page, all at one revision of this
 * replica, until `visit` returns false. The revision is pinned
 * (KVNode.pinRevision): under heavy writes the retention window
 * (--history-revisions) can move past a long walk's revision before its
 * last page, and the walk would fail halfway with "compacted".
 */
async function walkKeys(
  store: RespStore,
  prefix: Uint8Array,
  consistency: ReadConsistency,
  visit: (kvs: KeyValue[]) => boolean,
): Promise<void> {
  // A test stretches walks with it, as pages read from disk do (see failpoints.ts).
  const pauseMs = Number(failpoint("walk-page-pause") ?? 0);
  const pin = await store.node.pinRevision(consistency);
  const turns = new IoTurns(1);
  try {
    let after: Uint8Array | undefined;
    do {
      const page = await scanKeys(store, {
        prefix,
        after,
        limit: walkPageKeys,
        consistency: "serializable",
        version: pin.version,
        ttlAtMs: pin.ttlAtMs,
      });
      if (!visit(page.kvs)) return;
      after = page.next;
      if (!after) break;
      // A page from memory never waits for I/O: without turns of the event loop that poll
      // it, a count of a million keys held the node for a second, long enough for an
      // election (time_slice.ts, ioTurn).
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
      else await turns.due();
    } while (after);
  } finally {
    pin.release();
  }
}

/**
 * A one-key DEL is decided at apply time and joins pipelined write runs; a
 * multi-key DEL runs alone (it proposes its own groups of deletes).
 */
function delOverlap(args: Uint8Array[]): Overlap | undefined {
  return args.length === 2 ? "write" : undefined;
}

/** The key-space commands of the table. */
export const keyCommands: CommandSpec[] = [
  { name: "del", arity: -2, write: true, handler: del, overlap: delOverlap },
  { name: "unlink", arity: -2, write: true, handler: del, overlap: delOverlap },
  { name: "exists", arity: -2, write: false, handler: exists, overlap: "read" },
  // Nothing here tracks access times: TOUCH only counts the keys that exist.
  { name: "touch", arity: -2, write: false, handler: exists, overlap: "read" },
  { name: "type", arity: 2, write: false, handler: type, overlap: "read" },
  { name: "rename", arity: 3, write: true, handler: (c, a) => rename(c, a, false) },
  { name: "renamenx", arity: 3, write: true, handler: (c, a) => rename(c, a, true) },
  { name: "expire", arity: -3, write: true, handler: (c, a) => expire(c, a, 1000) },
  { name: "pexpire", arity: -3, write: true, handler: (c, a) => expire(c, a, 1) },
  { name: "expireat", arity: -3, write: true, handler: (c, a) => expire(c, a, 1000, true) },
  { name: "pexpireat", arity: -3, write: true, handler: (c, a) => expire(c, a, 1, true) },
  { name: "persist", arity: 2, write: true, handler: persist },
  { name: "ttl", arity: 2, write: false, handler: (c, a) => ttl(c, a, 1000), overlap: "read" },
  { name: "pttl", arity: 2, write: false, handler: (c, a) => ttl(c, a, 1), overlap: "read" },
  {
    name: "expiretime",
    arity: 2,
    write: false,
    handler: (c, a) => expireTime(c, a, 1000),
    overlap: "read",
  },
  {
    name: "pexpiretime",
    arity: 2,
    write: false,
    handler: (c, a) => expireTime(c, a, 1),
    overlap: "read",
  },
  { name: "scan", arity: -2, write: false, handler: scan },
  { name: "keys", arity: 2, write: false, handler: keys },
  {
    name: "dbsize",
    arity: 1,
    write: false,
    handler: async (c) => void c.out.integer(await countKeys(c.store, c.consistency)),
  },
];
