/**
 * One RESP client connection: read, parse every complete command in the
 * buffer, run them in order, answer the whole batch with one write. The
 * next read starts only after that write finished, so a client that does
 * not read its replies stops being read (backpressure); a batch whose
 * replies grow past maxRespPendingReplyBytes is flushed mid-batch. A
 * protocol error is answered with `-ERR Protocol error: ...` and the
 * connection is closed; no input can throw out of `serveConnection`.
 *
 * @module
 */

import {
  maxRespConcurrentCommands,
  maxRespPendingReplyBytes,
  maxRespWriteRunBytes,
} from "../common/limits.ts";
import type { ReadConsistency } from "../node/kv_node.ts";
import type { KeyValue } from "../node/state_machine.ts";
import { readNeedsIo } from "../storage/engine.ts";
import {
  type CommandContext,
  type CommandSpec,
  DerivedContext,
  dispatch,
  errorReply,
  lookupCommand,
  overlapOf,
} from "./command_table.ts";
import { dispatchOrQueue } from "./commands_multi.ts";
import { RespParser } from "./parser.ts";
import { ReplyWriter } from "./reply_writer.ts";
import type { RespStats } from "./stats.ts";

/** Bytes one socket read may return. */
const readChunkBytes = 64 * 1024;

/** Writes every byte (Deno.Conn.write may write fewer). */
async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

/**
 * Serves one connection until the client leaves, sends QUIT, or breaks the protocol.
 *
 * Order: replies are written in command order. Commands run one after the
 * other, except runs of consecutive commands of one overlap kind (see
 * CommandSpec.overlap): a run of reads waits for one linearizable read
 * barrier (ReadIndex) and then reads this replica's state in order, and a
 * run of unconditional writes (at most maxRespConcurrentCommands commands
 * and maxRespWriteRunBytes bytes) is submitted as one group of the
 * proposal batcher: one Raft entry, in order, on followers too.
 */
export async function serveConnection(
  conn: Deno.TcpConn,
  ctx: Omit<CommandContext, "out" | "consistency">,
): Promise<void> {
  const parser = new RespParser();
  const out = new ReplyWriter();
  let confirmed = false;
  const command: ConnectionContext = {
    ...ctx,
    out,
    get consistency(): ReadConsistency {
      return confirmed ? "serializable" : ctx.session.consistency;
    },
    confirmReads: (on: boolean) => (confirmed = on),
  };
  const chunk = new Uint8Array(readChunkBytes);
  try {
    conn.setNoDelay(true);
    let open = true;
    while (open) {
      const n = await conn.read(chunk);
      if (n === null) break;
      ctx.stats.netInputBytes += n;
      parser.feed(chunk.subarray(0, n));
      const batch: Uint8Array[][] = [];
      let protocolError: string | undefined;
      while (true) {
        let args: Uint8Array[] | undefined;
        try {
          args = parser.next();
        } catch (e) {
          protocolError = (e as Error).message;
          break;
        }
        if (args === undefined) break;
        if (args.length > 0) batch.push(args);
      }
      ctx.stats.commandsProcessed += batch.length;
      open = await runBatch(conn, command, batch);
      if (open && protocolError !== undefined) {
        out.error(`ERR Protocol error: ${protocolError}`);
        open = false;
      }
      await flush(conn, out, ctx.stats);
    }
  } catch (e) {
    if (
      !(e instanceof Deno.errors.ConnectionReset || e instanceof Deno.errors.BrokenPipe ||
        e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted)
    ) {
      ctx.log.warn("RESP connection failed", { error: (e as Error).message });
    }
  } finally {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

/** A connection's context, plus the switch runBatch uses for confirmed read runs. */
interface ConnectionContext extends CommandContext {
  confirmReads(on: boolean): void;
}

/** The context of one command of a concurrent run: the connection's, with its own writer. */
class RunMemberContext extends DerivedContext {
  readonly #connection: ConnectionContext;

  constructor(connection: ConnectionContext, out: ReplyWriter) {
    super(connection, out);
    this.#connection = connection;
  }

  get consistency(): ReadConsistency {
    return this.#connection.consistency;
  }
}

/** Writes the pending replies, then reuses the writer's buffer. */
async function flush(conn: Deno.Conn, out: ReplyWriter, stats: RespStats): Promise<void> {
  if (out.length === 0) return;
  stats.netOutputBytes += out.length;
  stats.errorReplies += out.errors;
  await writeAll(conn, out.view());
  out.reset();
}

/** Bytes of a command's words: what bounds a write run's share of one Raft entry. */
function argBytes(args: Uint8Array[]): number {
  let n = 0;
  for (const a of args) n += a.length;
  return n;
}

/** Runs the commands of one read in order; false when the connection must close (QUIT). */
async function runBatch(
  conn: Deno.TcpConn,
  command: ConnectionContext,
  batch: Uint8Array[][],
): Promise<boolean> {
  const out = command.out;
  const specs = batch.map((args) => lookupCommand(command.table, args[0]));
  if (batch.length > 0) {
    command.session.lastActiveMs = command.store.node.clock.nowMs();
    command.session.lastCommand = specs[batch.length - 1]?.name ?? "unknown";
  }
  let i = 0;
  while (i < batch.length) {
    // Inside MULTI every command is queued one by one (commands_multi.ts).
    const kind = command.session.multi !== undefined ? undefined : overlapOf(specs[i], batch[i]);
    let j = i + 1;
    if (kind === "read" || kind === "local") {
      while (
        j < batch.length && j - i < maxRespConcurrentCommands &&
        overlapOf(specs[j], batch[j]) === kind
      ) j++;
    } else if (kind === "write") {
      let bytes = argBytes(batch[i]);
      while (
        j < batch.length && j - i < maxRespConcurrentCommands &&
        overlapOf(specs[j], batch[j]) === kind &&
        bytes + argBytes(batch[j]) <= maxRespWriteRunBytes
      ) bytes += argBytes(batch[j++]);
    }
    if (kind === "read" && command.session.consistency === "linearizable") {
      await runConfirmedReads(conn, command, batch, specs, i, j);
    } else if (j - i === 1 || kind !== "write") {
      for (let k = i; k < j; k++) {
        let outcome = dispatchOrQueue(command, batch[k], specs[k]);
        if (outcome instanceof Promise) outcome = await outcome;
        if (outcome === "close") return false;
        if (out.length >= maxRespPendingReplyBytes) await flush(conn, out, command.stats);
      }
    } else {
      const writers = batch.slice(i, j).map(() => new ReplyWriter(64, true));
      const start = (args: Uint8Array[], k: number) =>
        dispatch(new RunMemberContext(command, writers[k]), args, specs[i + k]);
      const run = batch.slice(i, j);
      const running = kind === "write"
        ? command.store.writeGroup(() => run.map(start))
        : run.map(start);
      for (let k = 0; k < running.length; k++) {
        await running[k];
        writers[k].moveTo(out);
        if (out.length >= maxRespPendingReplyBytes) await flush(conn, out, command.stats);
      }
    }
    i = j;
    if (out.length >= maxRespPendingReplyBytes) await flush(conn, out, command.stats);
  }
  return true;
}

/**
 * Reads [from, to) of a batch after one read barrier: every read arrived
 * before the barrier was asked for, so reading the state the barrier
 * guarantees is linearizable for each of them.
 */
async function runConfirmedReads(
  conn: Deno.TcpConn,
  command: ConnectionContext,
  batch: Uint8Array[][],
  specs: (CommandSpec | undefined)[],
  from: number,
  to: number,
): Promise<void> {
  const out = command.out;
  try {
    await command.store.readBarrier();
  } catch (e) {
    const reply = errorReply(e, command.log);
    for (let k = from; k < to; k++) out.error(reply);
    return;
  }
  command.confirmReads(true);
  try {
    const found = plainGets(batch, specs, from, to) ? getMany(command, batch, from, to) : undefined;
    for (let k = from; k < to; k++) {
      const kv = found === undefined ? readNeedsIo : found[k - from];
      if (kv === readNeedsIo) {
        const outcome = dispatch(command, batch[k], specs[k]);
        if (outcome instanceof Promise) await outcome;
      } else if (kv === undefined) out.nil();
      else out.bulk(kv.value);
      if (out.length >= maxRespPendingReplyBytes) await flush(conn, out, command.stats);
    }
  } finally {
    command.confirmReads(false);
  }
}

/** True when [from, to) of a batch are all `GET key`. */
function plainGets(
  batch: Uint8Array[][],
  specs: (CommandSpec | undefined)[],
  from: number,
  to: number,
): boolean {
  if (to - from < 2) return false;
  for (let k = from; k < to; k++) {
    if (specs[k]?.name !== "get" || batch[k].length !== 2) return false;
  }
  return true;
}

/**
 * The keys of a run of confirmed GETs looked up together (their memtable
 * cache misses overlap: Memtable.getMany): a value, undefined (absent) or
 * readNeedsIo (that GET runs alone) per key; undefined when one key is
 * invalid and each GET must run alone to report it.
 */
function getMany(
  command: ConnectionContext,
  batch: Uint8Array[][],
  from: number,
  to: number,
): (KeyValue | undefined | typeof readNeedsIo)[] | undefined {
  const keys: Uint8Array[] = [];
  for (let k = from; k < to; k++) keys.push(batch[k][1]);
  const got: (KeyValue | undefined | typeof readNeedsIo)[] = [];
  return command.store.getManyNow(keys, got) ? got : undefined;
}
