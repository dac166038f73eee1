/**
 * Transactions: MULTI, EXEC, DISCARD, WATCH and UNWATCH. After MULTI a
 * connection's commands are checked (name, arity, allowed here) and queued;
 * EXEC runs them all against a TxnOverlay (txn_overlay.ts) at one pinned
 * revision and commits their writes as one Raft entry, conditioned on
 * everything they read, so the transaction is atomic and isolated: no
 * other client's write lands between its commands. If a condition fails
 * (another client changed a key it read), EXEC runs the commands again on
 * the newer state, until the command deadline. WATCHed keys must still be
 * at the version WATCH saw, or EXEC answers nil and writes nothing.
 *
 * As in Redis: a command refused when queued (unknown, wrong arity, not
 * allowed in a transaction) makes EXEC answer EXECABORT; an error while
 * running one (INCR of a non-number) is that command's reply, and the
 * others still apply.
 *
 * @module
 */

import { byteString } from "../common/bytes.ts";
import { maxRequestBytes, maxTxnCommands } from "../common/limits.ts";
import {
  type CommandContext,
  type CommandOutcome,
  type CommandSpec,
  DerivedContext,
  dispatch,
  ReplyError,
} from "./command_table.ts";
import { untilNoConflict } from "./cas.ts";
import { ReplyWriter } from "./reply_writer.ts";
import type { WatchedKey } from "./session.ts";
import type { RespStore } from "./store.ts";
import { TxnOverlay } from "./txn_overlay.ts";

/** A command queued after MULTI. */
export interface QueuedCommand {
  args: Uint8Array[];
  spec: CommandSpec;
}

/**
 * The commands a transaction may hold: those whose handlers use only the
 * store members a TxnOverlay provides (TransactionalStore). Key walks
 * (SCAN, KEYS, DBSIZE), time-travel reads (VGET) and server commands are
 * refused when queued.
 */
const transactional = new Set([
  "get",
  "set",
  "setnx",
  "setex",
  "psetex",
  "getset",
  "getdel",
  "getex",
  "mget",
  "mset",
  "msetnx",
  "incr",
  "decr",
  "incrby",
  "decrby",
  "incrbyfloat",
  "append",
  "strlen",
  "getrange",
  "substr",
  "setrange",
  "del",
  "unlink",
  "exists",
  "touch",
  "type",
  "rename",
  "renamenx",
  "expire",
  "pexpire",
  "expireat",
  "pexpireat",
  "persist",
  "ttl",
  "pttl",
  "expiretime",
  "pexpiretime",
  "ping",
  "echo",
  "time",
  // Queued like the rest (it then changes nothing: EXEC forgets the WATCHed keys anyway), so
  // an UNWATCH after MULTI cannot cancel the check of keys WATCHed before it, as in Redis.
  "unwatch",
]);

/** Commands that act on the transaction itself, never queued. */
const control = new Set(["multi", "exec", "discard", "watch", "quit"]);

/**
 * Dispatches a command, or queues it when its connection is inside MULTI
 * (answering QUEUED, or the error that will make EXEC abort).
 */
export function dispatchOrQueue(
  ctx: CommandContext,
  args: Uint8Array[],
  spec: CommandSpec | undefined,
): CommandOutcome | Promise<CommandOutcome> {
  const session = ctx.session;
  const multi = session.multi;
  if (multi === undefined) return dispatch(ctx, args, spec);
  if (
    spec === undefined || (spec.arity > 0 ? args.length !== spec.arity : args.length < -spec.arity)
  ) {
    if (spec?.name === "exec") {
      // As Redis: a malformed EXEC still ends the transaction, discarding it.
      endTransaction(ctx);
      ctx.out.error(
        "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command",
      );
      return;
    }
    // The ordinary unknown-command or arity reply; the transaction is spoiled.
    dispatch(ctx, args, spec);
    session.multiFailed = true;
    return;
  }
  if (control.has(spec.name)) return dispatch(ctx, args, spec);
  const bytes = session.multiBytes + args.reduce((n, a) => n + a.length, 0);
  let refusal: string | undefined;
  if (!transactional.has(spec.name)) {
    refusal = `ERR ${spec.name.toUpperCase()} is not allowed inside MULTI here`;
  } else if (multi.length >= maxTxnCommands) {
    refusal = `ERR a transaction holds at most ${maxTxnCommands} commands`;
  } else if (bytes > maxRequestBytes) {
    // Its writes must fit one Raft entry, and its queue is held in memory until EXEC.
    refusal = `ERR a transaction holds at most ${maxRequestBytes} bytes of arguments`;
  }
  if (refusal !== undefined) {
    session.multiFailed = true;
    ctx.out.error(refusal);
    return;
  }
  multi.push({ args, spec });
  session.multiBytes = bytes;
  ctx.out.simple("QUEUED");
}

function multiCommand(ctx: CommandContext): void {
  if (ctx.session.multi !== undefined) throw new ReplyError("ERR MULTI calls can not be nested");
  ctx.session.multi = [];
  ctx.session.multiFailed = false;
  ctx.session.multiBytes = 0;
  ctx.out.simple("OK");
}

function discard(ctx: CommandContext): void {
  if (ctx.session.multi === undefined) throw new ReplyError("ERR DISCARD without MULTI");
  endTransaction(ctx);
  ctx.out.simple("OK");
}

/** Leaves MULTI and forgets the WATCHed keys (EXEC and DISCARD both do). */
function endTransaction(ctx: CommandContext): void {
  ctx.session.multi = undefined;
  ctx.session.multiFailed = false;
  ctx.session.multiBytes = 0;
  ctx.session.watched.clear();
}

async function watch(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  if (ctx.session.multi !== undefined) {
    throw new ReplyError("ERR WATCH inside MULTI is not allowed");
  }
  const keys = args.slice(1);
  const { kvs, revision } = await ctx.store.getManyPinned(keys, "linearizable");
  keys.forEach((key, i) => {
    const id = byteString(key);
    // The first WATCH of a key counts: a later one must not forgive a change in between.
    if (!ctx.session.watched.has(id)) {
      ctx.session.watched.set(id, { key, version: kvs[i]?.version ?? 0, revision });
    }
  });
  ctx.out.simple("OK");
}

async function exec(ctx: CommandContext): Promise<void> {
  const queued = ctx.session.multi;
  if (queued === undefined) throw new ReplyError("ERR EXEC without MULTI");
  const failed = ctx.session.multiFailed;
  const watched = [...ctx.session.watched.values()];
  endTransaction(ctx);
  if (failed) {
    throw new ReplyError("EXECABORT Transaction discarded because of previous errors.");
  }
  const store = ctx.store;
  const run = await untilNoConflict(
    store,
    store.requestDeadline(),
    "transaction's keys",
    async () => {
      const run = await runAtPin(ctx, queued, watched);
      // A transaction that only read commits nothing: its reads were all at one revision.
      if (run !== "watch-failed" && run.writes.some((w) => !w.checkOnly)) {
        await store.txn(run.writes);
      }
      return run;
    },
  );
  if (run === "watch-failed") ctx.out.nilArray();
  else {
    ctx.out.arrayHeader(queued.length).append(run.replies.view());
    ctx.out.errors += run.replies.errors; // errors inside EXEC count too, as in Redis
  }
}

/**
 * Runs the queued commands against an overlay of the store at one pinned
 * revision: their replies, and the writes to commit (with the conditions
 * that make the commit fail if anything they read has changed).
 */
async function runAtPin(
  ctx: CommandContext,
  queued: QueuedCommand[],
  watched: WatchedKey[],
) {
  const pin = await ctx.store.pinRevision();
  try {
    const overlay = new TxnOverlay(ctx.store, pin.version, pin.ttlAtMs);
    for (const w of watched) {
      if (await overlay.versionAtPin(w.key) !== w.version) return "watch-failed" as const;
      // Absent then and now: it may have been created and deleted in between (Redis aborts).
      if (w.version === 0 && await ctx.store.keyCreatedBetween(w.key, w.revision, pin.version)) {
        return "watch-failed" as const;
      }
    }
    const replies = new ReplyWriter(256);
    const inner = new TransactionContext(ctx, overlay, replies);
    for (const q of queued) {
      const outcome = dispatch(inner, q.args, q.spec);
      if (outcome instanceof Promise) await outcome;
    }
    return { replies, writes: overlay.writes() };
  } finally {
    pin.release();
  }
}

/** The context the queued commands run in: the connection's, with the overlay as the store. */
class TransactionContext extends DerivedContext {
  constructor(outer: CommandContext, overlay: TxnOverlay, out: ReplyWriter) {
    // Only the transactional commands run here, and they use no member the overlay lacks.
    super(outer, out, overlay as unknown as RespStore);
  }

  /** Reads see the pinned revision, which EXEC confirmed linearizably. */
  get consistency(): "serializable" {
    return "serializable";
  }
}

/** The transaction commands of the table. */
export const multiCommands: CommandSpec[] = [
  { name: "multi", arity: 1, write: false, handler: multiCommand },
  { name: "exec", arity: 1, write: true, handler: exec },
  { name: "discard", arity: 1, write: false, handler: discard },
  { name: "watch", arity: -2, write: false, handler: watch },
  {
    name: "unwatch",
    arity: 1,
    write: false,
    handler: (ctx) => {
      ctx.session.watched.clear();
      ctx.out.simple("OK");
    },
  },
];
