/**
 * String commands: GET, SET (EX/PX/EXAT/PXAT/NX/XX/GET/KEEPTTL), SETNX,
 * GETSET, MGET, MSET, INCR/DECR/INCRBY/DECRBY, APPEND, STRLEN and VGET (an
 * MVCC time-travel read). Plain SET and MSET are blind writes; every
 * read-modify-write goes through `readModifyWrite` (compare-and-set).
 *
 * @module
 */

import { concatBytes } from "../common/bytes.ts";
import { maxValueBytes } from "../common/limits.ts";
import type { TxnWrite } from "../node/command.ts";
import { readNeedsIo } from "../storage/engine.ts";
import { readModifyWrite } from "./cas.ts";
import {
  argInteger,
  argText,
  argWord,
  type CommandContext,
  type CommandSpec,
  type Overlap,
  ReplyError,
} from "./command_table.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const int64Min = -(2n ** 63n);
const int64Max = 2n ** 63n - 1n;

function now(ctx: CommandContext): number {
  return ctx.store.node.clock.wallMs();
}

/** GET: answered at once from memory when the read is local; else through the store. */
function get(ctx: CommandContext, args: Uint8Array[]): Promise<void> | void {
  if (ctx.consistency === "serializable") {
    const kv = ctx.store.getNow(args[1]);
    if (kv !== readNeedsIo) {
      if (kv) ctx.out.bulk(kv.value);
      else ctx.out.nil();
      return;
    }
  }
  return ctx.store.get(args[1], ctx.consistency).then((kv) => {
    if (kv) ctx.out.bulk(kv.value);
    else ctx.out.nil();
  });
}

/** The parsed options of SET. */
interface SetOptions {
  /** undefined = clear the TTL (unless keepTtl). */
  expiresAtMs: number | undefined;
  keepTtl: boolean;
  condition: "" | "NX" | "XX";
  get: boolean;
}

function positive(arg: Uint8Array, command: string): number {
  const n = argInteger(arg);
  if (n <= 0) throw new ReplyError(`ERR invalid expire time in '${command}' command`);
  return n;
}

/**
 * SET's options as Redis 7 takes them: an option may repeat (the last
 * expiry wins), but NX with XX, two kinds of expiry, or KEEPTTL with an
 * expiry is a syntax error. Only the expiry that wins is checked.
 */
function parseSetOptions(ctx: CommandContext, args: Uint8Array[]): SetOptions {
  const o: SetOptions = { expiresAtMs: undefined, keepTtl: false, condition: "", get: false };
  let expiry = "";
  let expiryArg: Uint8Array | undefined;
  for (let i = 3; i < args.length; i++) {
    const w = argWord(args[i]);
    const hasNext = i + 1 < args.length;
    if ((w === "NX" || w === "XX") && (o.condition === "" || o.condition === w)) o.condition = w;
    else if (w === "GET") o.get = true;
    else if (w === "KEEPTTL" && expiry === "") o.keepTtl = true;
    else if (
      (w === "EX" || w === "PX" || w === "EXAT" || w === "PXAT") && !o.keepTtl &&
      (expiry === "" || expiry === w) && hasNext
    ) {
      expiry = w;
      expiryArg = args[++i];
    } else throw new ReplyError("ERR syntax error");
  }
  if (expiryArg !== undefined) {
    const n = positive(expiryArg, "set");
    o.expiresAtMs = expiry === "EX"
      ? now(ctx) + n * 1000
      : expiry === "PX"
      ? now(ctx) + n
      : expiry === "EXAT"
      ? n * 1000
      : n;
  }
  return o;
}

async function set(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const [, key, value] = args;
  const o = parseSetOptions(ctx, args);
  if (o.condition === "" && !o.get && !o.keepTtl) {
    await ctx.store.put(key, value, o.expiresAtMs ?? 0);
    ctx.out.simple("OK");
    return;
  }
  if (o.condition === "NX" && !o.get) {
    // Decided by the state machine in one step: the key must be absent at apply time.
    try {
      await ctx.store.put(key, value, o.keepTtl ? 0 : o.expiresAtMs ?? 0, 0);
      ctx.out.simple("OK");
    } catch (e) {
      if ((e as { code?: string }).code !== "Conflict") throw e;
      ctx.out.nil();
    }
    return;
  }
  const r = await readModifyWrite(ctx.store, key, (cur) => {
    const ok = o.condition === "" || (o.condition === "NX") === (cur === undefined);
    const expiresAtMs = o.keepTtl ? cur?.expiresAtMs ?? 0 : o.expiresAtMs ?? 0;
    return {
      action: ok ? { kind: "put", value, expiresAtMs } : { kind: "none" },
      result: { ok, old: cur?.value },
    };
  });
  if (o.get) {
    if (r.old) ctx.out.bulk(r.old);
    else ctx.out.nil();
  } else if (r.ok) ctx.out.simple("OK");
  else ctx.out.nil();
}

async function setnx(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  try {
    await ctx.store.put(args[1], args[2], 0, 0);
    ctx.out.integer(1);
  } catch (e) {
    if ((e as { code?: string }).code !== "Conflict") throw e;
    ctx.out.integer(0);
  }
}

async function getset(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const old = await readModifyWrite(ctx.store, args[1], (cur) => ({
    action: { kind: "put", value: args[2], expiresAtMs: 0 },
    result: cur?.value,
  }));
  if (old) ctx.out.bulk(old);
  else ctx.out.nil();
}

async function mget(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const kvs = await ctx.store.getMany(args.slice(1), ctx.consistency);
  ctx.out.bulkArray(kvs.map((kv) => kv?.value));
}

async function mset(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  if (args.length % 2 !== 1) {
    throw new ReplyError("ERR wrong number of arguments for 'mset' command");
  }
  const writes: TxnWrite[] = [];
  for (let i = 1; i < args.length; i += 2) {
    writes.push({ key: args[i], value: args[i + 1], expiresAtMs: 0 });
  }
  await ctx.store.txn(writes);
  ctx.out.simple("OK");
}

function parseInt64(value: Uint8Array): bigint {
  const s = decoder.decode(value);
  if (!/^-?\d{1,19}$/.test(s) || /^-?0\d/.test(s) || s === "-0") {
    throw new ReplyError("ERR value is not an integer or out of range");
  }
  const n = BigInt(s);
  if (n < int64Min || n > int64Max) {
    throw new ReplyError("ERR value is not an integer or out of range");
  }
  return n;
}

async function incrBy(ctx: CommandContext, key: Uint8Array, delta: bigint): Promise<void> {
  const n = await readModifyWrite(ctx.store, key, (cur) => {
    const next = (cur ? parseInt64(cur.value) : 0n) + delta;
    if (next < int64Min || next > int64Max) {
      throw new ReplyError("ERR increment or decrement would overflow");
    }
    return {
      action: {
        kind: "put",
        value: encoder.encode(next.toString()),
        expiresAtMs: cur?.expiresAtMs ?? 0,
      },
      result: next,
    };
  });
  ctx.out.integer(n);
}

async function append(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const len = await readModifyWrite(ctx.store, args[1], (cur) => {
    const value = cur ? concatBytes(cur.value, args[2]) : args[2];
    if (value.length > maxValueBytes) {
      throw new ReplyError(`ERR string exceeds maximum allowed size (${maxValueBytes} bytes)`);
    }
    return {
      action: { kind: "put", value, expiresAtMs: cur?.expiresAtMs ?? 0 },
      result: value.length,
    };
  });
  ctx.out.integer(len);
}

async function strlen(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const kv = await ctx.store.get(args[1], ctx.consistency);
  ctx.out.integer(kv?.value.length ?? 0);
}

async function vget(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const version = argInteger(args[2]);
  if (version < 1) throw new ReplyError("ERR version must be a positive integer");
  const kv = await ctx.store.get(args[1], ctx.consistency, version);
  if (kv) ctx.out.bulk(kv.value);
  else ctx.out.nil();
}

/**
 * SET without GET, XX, NX or KEEPTTL is a blind write: it joins its
 * neighbours' group in one Raft entry. NX is a compare-and-set proposed on
 * its own (not through the batcher), so it runs alone, after the writes
 * before it.
 */
function setOverlap(args: Uint8Array[]): Overlap | undefined {
  for (let i = 3; i < args.length; i++) {
    const w = argWord(args[i]);
    if (w === "GET" || w === "XX" || w === "NX" || w === "KEEPTTL") return undefined;
  }
  return "write";
}

/** DECRBY: the int64 minimum has no increment to negate into (Redis's own error). */
function decrBy(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const delta = deltaArg(args[2]);
  if (delta === int64Min) throw new ReplyError("ERR decrement would overflow");
  return incrBy(ctx, args[1], -delta);
}

function deltaArg(arg: Uint8Array): bigint {
  return parseInt64(encoder.encode(argText(arg)));
}

/** The string commands of the table. */
export const stringCommands: CommandSpec[] = [
  { name: "get", arity: 2, write: false, handler: get, overlap: "read" },
  { name: "set", arity: -3, write: true, handler: set, overlap: setOverlap },
  { name: "setnx", arity: 3, write: true, handler: setnx },
  { name: "getset", arity: 3, write: true, handler: getset },
  { name: "mget", arity: -2, write: false, handler: mget, overlap: "read" },
  { name: "mset", arity: -3, write: true, handler: mset, overlap: "write" },
  { name: "incr", arity: 2, write: true, handler: (c, a) => incrBy(c, a[1], 1n) },
  { name: "decr", arity: 2, write: true, handler: (c, a) => incrBy(c, a[1], -1n) },
  { name: "incrby", arity: 3, write: true, handler: (c, a) => incrBy(c, a[1], deltaArg(a[2])) },
  { name: "decrby", arity: 3, write: true, handler: decrBy },
  { name: "append", arity: 3, write: true, handler: append },
  { name: "strlen", arity: 2, write: false, handler: strlen, overlap: "read" },
  { name: "vget", arity: 3, write: false, handler: vget, overlap: "read" },
];
