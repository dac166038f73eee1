/**
 * The RESP command table and the dispatcher: looks a command up by name,
 * checks its arity the way Redis does (n = exactly n arguments including the
 * name, -n = at least n), runs it and turns every error into one RESP error
 * reply, so nothing a client sends can escape as an exception.
 *
 * @module
 */

import type { RespStats } from "./stats.ts";
import { isKVError, NotLeaderError } from "../common/errors.ts";
import type { Logger } from "../node/logger.ts";
import type { ReadConsistency } from "../node/kv_node.ts";
import type { ReplyWriter } from "./reply_writer.ts";
import type { Session } from "./session.ts";
import type { RespStore } from "./store.ts";

const decoder = new TextDecoder();

/** What a command handler gets: the store, the connection's session, where to reply. */
export interface CommandContext {
  store: RespStore;
  session: Session;
  out: ReplyWriter;
  log: Logger;
  /** Every registered command (COMMAND COUNT/DOCS). */
  table: Map<string, CommandSpec>;
  /** The RESP listener's address, for INFO. */
  respAddr: string;
  /** The listener's counters, for INFO. */
  stats: RespStats;
  /** Every open connection's session, for CLIENT LIST. */
  sessions: ReadonlySet<Session>;
  /**
   * How this command reads: the session's choice, or "serializable" when
   * the connection already confirmed a read barrier for the run of reads this
   * command belongs to (see connection.ts).
   */
  consistency: ReadConsistency;
}

/**
 * A context made from another for a command that answers into its own
 * writer (a member of a concurrent run, a command inside EXEC), optionally
 * against another store. A class, not `{ ...ctx, out }`: spreading the
 * connection's context (it has a getter) took a tenth of a leader's CPU
 * under pipelined SETs.
 */
export abstract class DerivedContext implements CommandContext {
  readonly store: RespStore;
  readonly session: Session;
  readonly log: Logger;
  readonly table: Map<string, CommandSpec>;
  readonly respAddr: string;
  readonly stats: RespStats;
  readonly sessions: ReadonlySet<Session>;

  constructor(from: CommandContext, readonly out: ReplyWriter, store = from.store) {
    this.store = store;
    this.session = from.session;
    this.log = from.log;
    this.table = from.table;
    this.respAddr = from.respAddr;
    this.stats = from.stats;
    this.sessions = from.sessions;
  }

  abstract get consistency(): ReadConsistency;
}

/** Kinds of commands that may run concurrently with their neighbours (see CommandSpec). */
export type Overlap = "read" | "write" | "local";

/** A handler may ask the connection to close after its reply (QUIT). */
export type CommandOutcome = void | "close";

/** One command's definition. */
export interface CommandSpec {
  /** Lower-case name, as COMMAND reports it. */
  name: string;
  /** Redis arity: n = exactly n words including the name; -n = at least n. */
  arity: number;
  /** Writes go through Raft (and are forwarded from followers). */
  write: boolean;
  /**
   * How a run of consecutive commands of this kind in one pipeline may
   * overlap (see connection.ts): "local" = touches no data (PING, ECHO: never
   * waits for Raft); "read" = reads that change nothing; "write" = blind
   * writes (no read first, no compare-and-set) that go through the proposal
   * batcher, so a run of them becomes one group: one Raft entry, in order.
   * Absent = run alone.
   */
  overlap?: Overlap | ((args: Uint8Array[]) => Overlap | undefined);
  handler: (ctx: CommandContext, args: Uint8Array[]) => Promise<CommandOutcome> | CommandOutcome;
}

/** An argument as text (keys and values stay bytes; options and numbers are text). */
export function argText(arg: Uint8Array): string {
  return decoder.decode(arg);
}

/** An argument as an upper-case option word. */
export function argWord(arg: Uint8Array): string {
  return decoder.decode(arg).toUpperCase();
}

/** A user error: replied as `-<message>` (the message starts with its code word). */
export class ReplyError extends Error {
  override name = "ReplyError";
}

/**
 * Parses an integer argument as Redis does (a signed 64-bit number in
 * canonical form: no sign on 0, no leading zeros, no "+") or raises its
 * "not an integer" error. Beyond 2^53 the number is approximate: callers
 * whose arithmetic needs it exact check it (EXPIRE, SET EX: the expiry
 * limit; VGET: validateVersion).
 */
export function argInteger(arg: Uint8Array): number {
  return Number(argBigInteger(arg));
}

/** A 64-bit integer argument exactly (where a Number would round past 2^53). */
export function argBigInteger(arg: Uint8Array): bigint {
  const s = decoder.decode(arg);
  const n = /^(0|-?[1-9]\d{0,18})$/.test(s) ? BigInt(s) : undefined;
  if (n === undefined || n > int64Max || n < int64Min) {
    throw new ReplyError("ERR value is not an integer or out of range");
  }
  return n;
}

/** The range of a Redis integer (a signed 64-bit long long). */
export const int64Max = 2n ** 63n - 1n;
export const int64Min = -(2n ** 63n);

/** Builds the lookup table from specs. */
export function buildTable(specs: CommandSpec[]): Map<string, CommandSpec> {
  const table = new Map<string, CommandSpec>();
  for (const s of specs) table.set(s.name, s);
  return table;
}

/**
 * The arguments an unknown command's error shows, as Redis builds them:
 * each quoted and followed by a space, while the text is under 128 bytes,
 * the last one cut to what fits.
 */
function preview(args: Uint8Array[]): string {
  let out = "";
  let bytes = 0;
  for (let i = 1; i < args.length && bytes < 128; i++) {
    const shown = args[i].subarray(0, 128 - bytes);
    out += `'${argText(shown)}' `;
    bytes += shown.length + 3;
  }
  return out;
}

/**
 * The spec named by a command's first word (case-insensitive). Short ASCII
 * names are lower-cased without a TextDecoder: this runs for every command.
 */
export function lookupCommand(
  table: Map<string, CommandSpec>,
  name: Uint8Array,
): CommandSpec | undefined {
  if (name.length > 32) return table.get(argText(name).toLowerCase());
  // A pipeline repeats one command: the last name looked up is answered without a string.
  if (table === last.table && name.length === last.length) {
    let same = true;
    for (let i = 0; i < name.length; i++) {
      if (name[i] !== last.name[i]) {
        same = false;
        break;
      }
    }
    if (same) return last.spec;
  }
  let s = "";
  for (let i = 0; i < name.length; i++) {
    const b = name[i];
    s += String.fromCharCode(b >= 65 && b <= 90 ? b + 32 : b);
  }
  const spec = table.get(s);
  last.table = table;
  last.name.set(name);
  last.length = name.length;
  last.spec = spec;
  return spec;
}

/** lookupCommand's last answer (names of at most 32 bytes). */
const last: {
  table: Map<string, CommandSpec> | undefined;
  name: Uint8Array;
  length: number;
  spec: CommandSpec | undefined;
} = { table: undefined, name: new Uint8Array(32), length: -1, spec: undefined };

/** The overlap kind of one command, or undefined when it must run alone. */
export function overlapOf(spec: CommandSpec | undefined, args: Uint8Array[]): Overlap | undefined {
  if (!spec || spec.overlap === undefined) return undefined;
  if (typeof spec.overlap === "string") return spec.overlap;
  return spec.overlap(args);
}

/**
 * Runs one command and writes exactly one reply for it. `spec` is the
 * command's entry when the caller looked it up already.
 */
export function dispatch(
  ctx: CommandContext,
  args: Uint8Array[],
  spec: CommandSpec | undefined = lookupCommand(ctx.table, args[0]),
): CommandOutcome | Promise<CommandOutcome> {
  if (!spec) {
    ctx.out.error(
      `ERR unknown command '${argText(args[0].subarray(0, 128))}', with args beginning with: ${
        preview(args)
      }`,
    );
    return;
  }
  if (spec.arity > 0 ? args.length !== spec.arity : args.length < -spec.arity) {
    ctx.out.error(`ERR wrong number of arguments for '${spec.name}' command`);
    return;
  }
  // A handler that finished synchronously costs no promise (hot GETs do).
  try {
    const outcome = spec.handler(ctx, args);
    if (!(outcome instanceof Promise)) return outcome;
    return outcome.catch((e) => void ctx.out.error(errorReply(e, ctx.log)));
  } catch (e) {
    ctx.out.error(errorReply(e, ctx.log));
  }
}

/** The RESP error line for an error a command raised. */
export function errorReply(e: unknown, log: Logger): string {
  if (e instanceof ReplyError) return e.message;
  if (e instanceof NotLeaderError) {
    return e.leaderId
      ? `READONLY You can't write against a follower; leader is ${e.leaderId} at ${
        e.leaderAddr ?? "an unknown address"
      }`
      : "CLUSTERDOWN no leader is known yet; retry shortly";
  }
  if (isKVError(e, "InvalidArgument")) return `ERR ${e.message}`;
  if (isKVError(e)) return `ERR ${e.code}: ${e.message}`;
  log.error("RESP command failed", { error: String((e as Error)?.stack ?? e) });
  return `ERR internal error: ${(e as Error)?.message ?? String(e)}`;
}
