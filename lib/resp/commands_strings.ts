/**
 * String commands: GET, SET (EX/PX/EXAT/PXAT/NX/XX/GET/KEEPTTL), SETNX,
 * SETEX, PSETEX, GETSET, GETDEL, GETEX, MGET, MSET, MSETNX, INCR/DECR/INCRBY/DECRBY,
 * INCRBYFLOAT, APPEND, STRLEN, GETRANGE (SUBSTR), SETRANGE and VGET (an MVCC
 * time-travel read). Plain SET, SETEX, PSETEX and MSET are blind writes;
 * every read-modify-write goes through `readModifyWrite` (compare-and-set).
 *
 * @module
 */

import { concatBytes } from "../common/bytes.ts";
import { maxValueBytes } from "../common/limits.ts";
import type { TxnWrite } from "../node/command.ts";
import { readNeedsIo } from "../storage/engine.ts";
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

const encoder = new TextEncoder();
const decoder = new TextDecoder();

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

/**
 * The deadline (Unix ms) an expiry option of `command` sets: EX and PX
 * from now, EXAT and PXAT as given; Redis's error for an amount that is not
 * positive or whose deadline no clock can reach.
 */
function deadlineOf(ctx: CommandContext, option: string, arg: Uint8Array, command: string): number {
  const n = argInteger(arg);
  const at = option === "EX"
    ? now(ctx) + n * 1000
    : option === "PX"
    ? now(ctx) + n
    : option === "EXAT"
    ? n * 1000
    : n;
  if (n <= 0 || !Number.isSafeInteger(at)) {
    throw new ReplyError(`ERR invalid expire time in '${command}' command`);
  }
  return at;
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
  if (expiryArg !== undefined) o.expiresAtMs = deadlineOf(ctx, expiry, expiryArg, "set");
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

/** SETEX / PSETEX key amount value: SET with EX / PX, a blind write. */
async function setex(ctx: CommandContext, args: Uint8Array[], unitMs: number): Promise<void> {
  const at = deadlineOf(ctx, unitMs === 1 ? "PX" : "EX", args[2], argText(args[0]).toLowerCase());
  await ctx.store.put(args[1], args[3], at);
  ctx.out.simple("OK");
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

async function getdel(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const old = await readModifyWrite(ctx.store, args[1], (cur) => ({
    action: cur ? { kind: "delete" } : { kind: "none" },
    result: cur?.value,
  }));
  if (old) ctx.out.bulk(old);
  else ctx.out.nil();
}

/**
 * GETEX key [EX s | PX ms | EXAT s | PXAT ms | PERSIST]: GET, and with an
 * option a new expiry (or none) set by compare-and-set. As in Redis, an
 * option may repeat (the last amount counts) but not mix with another, and
 * the expiry is checked only once the key is found: an absent key answers
 * nil whatever the amount.
 */
async function getex(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  if (args.length === 2) return get(ctx, args);
  let w = "";
  let amount: Uint8Array | undefined;
  for (let i = 2; i < args.length;) {
    const option = argWord(args[i]);
    const takesAmount = ["EX", "PX", "EXAT", "PXAT"].includes(option);
    if ((option !== "PERSIST" && !takesAmount) || (w !== "" && w !== option)) {
      throw new ReplyError("ERR syntax error");
    }
    w = option;
    if (!takesAmount) {
      i++;
      continue;
    }
    if (i + 1 >= args.length) throw new ReplyError("ERR syntax error");
    amount = args[i + 1];
    i += 2;
  }
  const persist = w === "PERSIST";
  const deadline = () => persist ? 0 : deadlineOf(ctx, w, amount!, "getex");
  const value = await readModifyWrite(ctx.store, args[1], (cur) => {
    if (!cur) return { action: { kind: "none" }, result: undefined };
    const expiresAtMs = deadline();
    return {
      // A deadline already past deletes the key; PERSIST of a key without one changes nothing.
      action: expiresAtMs === 0 && cur.expiresAtMs === 0
        ? { kind: "none" }
        : expiresAtMs > 0 && expiresAtMs <= now(ctx)
        ? { kind: "delete" }
        : { kind: "put", value: cur.value, expiresAtMs },
      result: cur.value,
    };
  });
  if (value) ctx.out.bulk(value);
  else ctx.out.nil();
}

async function mget(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const kvs = await ctx.store.getMany(args.slice(1), ctx.consistency);
  ctx.out.bulkArray(kvs.map((kv) => kv?.value));
}

/**
 * MSET's and MSETNX's key-value pairs as writes (with `ifVersion` for
 * each when given); the command's arity error when a value is missing.
 */
function pairWrites(args: Uint8Array[], ifVersion?: number): TxnWrite[] {
  if (args.length % 2 !== 1) {
    throw new ReplyError(
      `ERR wrong number of arguments for '${argText(args[0]).toLowerCase()}' command`,
    );
  }
  const writes: TxnWrite[] = [];
  for (let i = 1; i < args.length; i += 2) {
    writes.push({ key: args[i], value: args[i + 1], expiresAtMs: 0, ifVersion });
  }
  return writes;
}

/** MSETNX: sets every pair, or none when any of the keys exists (one transaction). */
async function msetnx(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const writes = pairWrites(args, 0);
  const set = await readModifyWriteKeys(ctx.store, writes.map((w) => w.key), (current) => {
    const anyExists = current.some((kv) => kv !== undefined);
    return anyExists ? { writes: [], result: false } : { writes, result: true };
  });
  ctx.out.integer(set ? 1 : 0);
}

async function mset(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  await ctx.store.txn(pairWrites(args));
  ctx.out.simple("OK");
}

async function incrBy(ctx: CommandContext, key: Uint8Array, delta: bigint): Promise<void> {
  const n = await readModifyWrite(ctx.store, key, (cur) => {
    const next = (cur ? argBigInteger(cur.value) : 0n) + delta;
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

/**
 * A decimal number as Redis reads a float argument (no spaces, no hex),
 * kept exact: digits as a bigint scaled by 10^-scale.
 */
interface Decimal {
  digits: bigint;
  scale: number;
}

/** Fractional digits INCRBYFLOAT keeps, as Redis (it prints with %.17Lf). */
const floatFractionDigits = 17;
/**
 * The largest long double plus half its last unit, (2^65 - 1) x 2^16319:
 * strtold rounds a value at or above it to infinity (an overflow).
 */
const longDoubleOverflow = ((1n << 65n) - 1n) << 16319n;
/** Half the smallest subnormal long double is 2^-16446: at or below it, strtold underflows to zero. */
const longDoubleUnderflowBits = 16446n;
/** The smallest decimal exponent a long double holds (subnormals included). */
const minFloatExponent = -4951;

/**
 * A number as Redis's strtold reads it (decimal forms only): a value a long
 * double cannot hold, above its largest or so small it rounds to zero, is
 * not a valid float; "inf" is one, whose sum cannot be stored.
 */
function parseDecimal(text: string): Decimal {
  if (/^[+-]?inf(inity)?$/i.test(text)) {
    throw new ReplyError("ERR increment would produce NaN or Infinity");
  }
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!m || (m[2] === "" && (m[3] ?? "") === "")) {
    throw new ReplyError("ERR value is not a valid float");
  }
  const fraction = m[3] ?? "";
  // Exponents far past any long double are clamped (the range checks below refuse them alike).
  const e = BigInt(m[4] ?? "0");
  const exponent = e > 10_000_000n ? 10_000_000 : e < -10_000_000n ? -10_000_000 : Number(e);
  // The value is digits / 10^scale.
  let digits = BigInt((m[2] || "0") + fraction);
  let scale = fraction.length - exponent;
  if (digits === 0n) return { digits: 0n, scale: 0 };
  // Its decimal exponent, read from the text (a long mantissa is not converted again).
  const integer = (m[2] || "").replace(/^0+/, "");
  const magnitude = exponent +
    (integer.length > 0
      ? integer.length - 1
      : -(fraction.length - fraction.replace(/^0+/, "").length) - 1);
  // Exactly only where the decimal exponent alone cannot tell.
  const overflows = magnitude > 4932 || (magnitude === 4932 &&
    (scale <= 0
      ? digits * 10n ** BigInt(-scale) >= longDoubleOverflow
      : digits >= longDoubleOverflow * 10n ** BigInt(scale)));
  const underflows = magnitude < -4952 ||
    (magnitude <= -4950 && (digits << longDoubleUnderflowBits) <= 10n ** BigInt(scale));
  if (overflows || underflows) throw new ReplyError("ERR value is not a valid float");
  if (scale < 0) {
    digits *= 10n ** BigInt(-scale);
    scale = 0;
  }
  if (scale > -minFloatExponent + 40) {
    // Digits below a long double's smallest value add nothing: keep the number small.
    const cut = 10n ** BigInt(scale + minFloatExponent - 40);
    digits /= cut;
    scale = -minFloatExponent + 40;
  }
  return { digits: m[1] === "-" ? -digits : digits, scale };
}

/** a + b, rounded half away from zero to floatFractionDigits, as Redis would print it. */
function addDecimals(a: Decimal, b: Decimal): string {
  const scale = Math.max(a.scale, b.scale);
  let sum = a.digits * 10n ** BigInt(scale - a.scale) + b.digits * 10n ** BigInt(scale - b.scale);
  let places = scale;
  if (places > floatFractionDigits) {
    const cut = 10n ** BigInt(places - floatFractionDigits);
    const half = cut / 2n;
    sum = sum < 0n ? -((-sum + half) / cut) : (sum + half) / cut;
    places = floatFractionDigits;
  }
  const negative = sum < 0n;
  const digits = (negative ? -sum : sum).toString().padStart(places + 1, "0");
  const integer = digits.slice(0, digits.length - places);
  if (integer.length >= 4933 && BigInt(integer) >= longDoubleOverflow) {
    throw new ReplyError("ERR increment would produce NaN or Infinity");
  }
  const fraction = digits.slice(digits.length - places).replace(/0+$/, "");
  const text = fraction === "" ? integer : `${integer}.${fraction}`;
  return negative && text !== "0" ? "-" + text : text;
}

/**
 * INCRBYFLOAT: exact decimal arithmetic on the two numbers as written,
 * rounded to 17 fractional digits. Redis adds in long double and prints
 * with 17 fractional digits, which gives the same text for the numbers
 * people write (10.50 + 0.1 = 10.6; a double would give 0.30000000000000004
 * for 0.1 + 0.2, where Redis answers 0.3). Where a long double cannot hold
 * the number (more than about 19 significant digits, 1e400) Redis prints its
 * binary approximation and this prints the exact sum. Hexadecimal floats,
 * which Redis's strtold takes, are refused.
 */
async function incrByFloat(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const deltaText = argText(args[2]);
  const text = await readModifyWrite(ctx.store, args[1], (cur) => {
    // The stored value is judged first, then the increment, as Redis does.
    const base = cur ? parseDecimal(decoder.decode(cur.value)) : { digits: 0n, scale: 0 };
    const next = addDecimals(base, parseDecimal(deltaText));
    return {
      action: { kind: "put", value: encoder.encode(next), expiresAtMs: cur?.expiresAtMs ?? 0 },
      result: next,
    };
  });
  ctx.out.bulk(text);
}

/**
 * GETRANGE key start end: the bytes from start to end inclusive; negative
 * offsets count from the end, and the range is clipped to the value.
 */
async function getrange(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  // Compared exactly: past 2^53 two different indexes can round to one Number.
  const startExact = argBigInteger(args[2]);
  const endExact = argBigInteger(args[3]);
  let start = Number(startExact);
  let end = Number(endExact);
  const kv = await ctx.store.get(args[1], ctx.consistency);
  const value = kv?.value ?? new Uint8Array(0);
  const n = value.length;
  if (startExact < 0n && endExact < 0n && startExact > endExact) {
    ctx.out.bulk(new Uint8Array(0));
    return;
  }
  if (start < 0) start = Math.max(0, n + start);
  if (end < 0) end = Math.max(0, n + end);
  if (end >= n) end = n - 1;
  if (n === 0 || start > end) ctx.out.bulk(new Uint8Array(0));
  else ctx.out.bulk(value.subarray(start, end + 1));
}

/**
 * SETRANGE key offset value: overwrites from offset, zero-padding a
 * shorter (or absent) value first; the reply is the new length. An empty
 * value changes nothing (and creates no key).
 */
async function setrange(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const offset = argInteger(args[2]);
  if (offset < 0) throw new ReplyError("ERR offset is out of range");
  const patch = args[3];
  if (patch.length > 0 && offset + patch.length > maxValueBytes) {
    throw new ReplyError(`ERR string exceeds maximum allowed size (${maxValueBytes} bytes)`);
  }
  const len = await readModifyWrite(ctx.store, args[1], (cur) => {
    const old = cur?.value ?? new Uint8Array(0);
    if (patch.length === 0) return { action: { kind: "none" }, result: old.length };
    const value = new Uint8Array(Math.max(old.length, offset + patch.length));
    value.set(old);
    value.set(patch, offset);
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
  const delta = argBigInteger(args[2]);
  if (delta === int64Min) throw new ReplyError("ERR decrement would overflow");
  return incrBy(ctx, args[1], -delta);
}

/** The string commands of the table. */
export const stringCommands: CommandSpec[] = [
  { name: "get", arity: 2, write: false, handler: get, overlap: "read" },
  { name: "set", arity: -3, write: true, handler: set, overlap: setOverlap },
  { name: "setnx", arity: 3, write: true, handler: setnx },
  { name: "setex", arity: 4, write: true, handler: (c, a) => setex(c, a, 1000), overlap: "write" },
  { name: "psetex", arity: 4, write: true, handler: (c, a) => setex(c, a, 1), overlap: "write" },
  { name: "getset", arity: 3, write: true, handler: getset },
  { name: "getdel", arity: 2, write: true, handler: getdel },
  { name: "getex", arity: -2, write: true, handler: getex },
  { name: "mget", arity: -2, write: false, handler: mget, overlap: "read" },
  { name: "mset", arity: -3, write: true, handler: mset, overlap: "write" },
  { name: "msetnx", arity: -3, write: true, handler: msetnx },
  { name: "incr", arity: 2, write: true, handler: (c, a) => incrBy(c, a[1], 1n) },
  { name: "decr", arity: 2, write: true, handler: (c, a) => incrBy(c, a[1], -1n) },
  {
    name: "incrby",
    arity: 3,
    write: true,
    handler: (c, a) => incrBy(c, a[1], argBigInteger(a[2])),
  },
  { name: "decrby", arity: 3, write: true, handler: decrBy },
  { name: "incrbyfloat", arity: 3, write: true, handler: incrByFloat },
  { name: "append", arity: 3, write: true, handler: append },
  { name: "getrange", arity: 4, write: false, handler: getrange, overlap: "read" },
  { name: "substr", arity: 4, write: false, handler: getrange, overlap: "read" },
  { name: "setrange", arity: 4, write: true, handler: setrange },
  { name: "strlen", arity: 2, write: false, handler: strlen, overlap: "read" },
  { name: "vget", arity: 3, write: false, handler: vget, overlap: "read" },
];
