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

import { maxRespConcurrentCommands, maxRespPendingReplyBytes } from "../common/limits.ts";
import { type CommandContext, dispatch, overlapOf } from "./command_table.ts";
import { RespParser } from "./parser.ts";
import { ReplyWriter } from "./reply_writer.ts";

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
 * other, except that a run of consecutive "read" commands, or (on the
 * leader) of consecutive "write" commands decided at apply time, runs
 * concurrently (see CommandSpec.overlap): reads share one ReadIndex round,
 * and writes are proposed back to back in command order, so the Raft log
 * keeps their order, and a pipeline costs a few Raft rounds, not one per
 * command.
 */
export async function serveConnection(
  conn: Deno.TcpConn,
  ctx: Omit<CommandContext, "out">,
): Promise<void> {
  const parser = new RespParser();
  const out = new ReplyWriter();
  const command: CommandContext = { ...ctx, out };
  const chunk = new Uint8Array(readChunkBytes);
  try {
    conn.setNoDelay(true);
    let open = true;
    while (open) {
      const n = await conn.read(chunk);
      if (n === null) break;
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
      open = await runBatch(conn, command, batch);
      if (open && protocolError !== undefined) {
        out.error(`ERR Protocol error: ${protocolError}`);
        open = false;
      }
      if (out.length > 0) await writeAll(conn, out.take());
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

/** Runs the commands of one read in order; false when the connection must close (QUIT). */
async function runBatch(
  conn: Deno.TcpConn,
  command: CommandContext,
  batch: Uint8Array[][],
): Promise<boolean> {
  const out = command.out;
  let i = 0;
  while (i < batch.length) {
    const kind = overlapOf(command.table, batch[i]);
    let j = i + 1;
    if (kind === "read" || (kind === "write" && command.store.node.replica.isLeader)) {
      while (
        j < batch.length && j - i < maxRespConcurrentCommands &&
        overlapOf(command.table, batch[j]) === kind
      ) j++;
    }
    if (j - i === 1) {
      if (await dispatch(command, batch[i]) === "close") return false;
    } else {
      const writers = batch.slice(i, j).map(() => new ReplyWriter(64));
      const running = batch.slice(i, j).map((args, k) =>
        dispatch({ ...command, out: writers[k] }, args)
      );
      for (let k = 0; k < running.length; k++) {
        await running[k];
        out.append(writers[k].take());
        if (out.length >= maxRespPendingReplyBytes) await writeAll(conn, out.take());
      }
    }
    i = j;
    if (out.length >= maxRespPendingReplyBytes) await writeAll(conn, out.take());
  }
  return true;
}
