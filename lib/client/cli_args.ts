/**
 * Flags and subcommands of `rustkvd-cli`, parsed into a typed command. Pure:
 * argv in, a command or a usage error out, so every flag is tested without a
 * cluster. Global flags may stand before or after the subcommand, as in the
 * seed's walkthrough (`rustkvd-cli --peers a,b put k v`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { repeatedOption } from "../common/repeated_option.ts";
import {
  defaultRequestTimeoutMs,
  defaultScanLimit,
  maxRequestTimeoutMs,
  maxScanLimit,
} from "../common/limits.ts";
import { compareBytes, utf8 } from "../common/bytes.ts";
import { parseHostPort } from "../server/config.ts";
import type { CompareResult } from "../node/txn.ts";
import type { TxnCompareInput, TxnOpInput } from "./kv_client.ts";

/** Read consistency a caller may ask for. */
export type Consistency = "linearizable" | "serializable";

/** Flags every subcommand accepts. */
export interface GlobalOptions {
  peers: string[];
  timeoutMs: number;
  /** --timeout as given (undefined: not given); `watch` gives up only when it was. */
  timeoutGivenMs?: number;
  json: boolean;
  consistency: Consistency;
}

/** One parsed invocation. */
export type CliCommand =
  | { name: "put"; key: string; value: string; ttlSecs?: number; ifVersion?: number }
  | { name: "get"; key: string; version?: number }
  | { name: "delete"; key: string; ifVersion?: number }
  | {
    name: "scan";
    prefix?: string;
    start?: string;
    end?: string;
    limit: number;
    version?: number;
    keysOnly: boolean;
  }
  | { name: "watch"; prefix?: string; key?: string; startVersion?: number; prevKv: boolean }
  | { name: "status" }
  | {
    name: "bench";
    operations?: number;
    durationSecs?: number;
    concurrency: number;
    valueSize: number;
    readRatio: number;
    keySpace: number;
    inflight: number;
    connections: number;
    warmupSecs: number;
  }
  | { name: "member-list" }
  | { name: "member-add"; nodeId: string; addr: string }
  | { name: "member-remove"; nodeId: string }
  | { name: "transfer-leader"; nodeId: string }
  | { name: "locate"; key: string }
  | { name: "compact"; version: number }
  | { name: "txn"; compare: TxnCompareInput[]; success: TxnOpInput[]; failure: TxnOpInput[] };

/** Result of parsing: run, help (for a subcommand or the whole tool), version, or a usage error. */
export type ParsedCli =
  | { kind: "run"; global: GlobalOptions; command: CliCommand }
  | { kind: "help"; text: string }
  | { kind: "version" }
  | { kind: "error"; message: string; usage: string };

/** Exit codes of rustkvd-cli, documented in the README. */
export const ExitCode = {
  ok: 0,
  /** A runtime failure: the cluster answered with an error or could not be reached. */
  failure: 1,
  /** The key was not found (get), or a compare-and-set did not match. */
  notFound: 1,
  /** Bad flags or arguments. */
  usage: 2,
} as const;

const globalHelp = `GLOBAL OPTIONS:
  --peers <H:P,...>        cluster endpoints                 [default: 127.0.0.1:7001]
  --timeout <MS>           deadline per call in ms            [default: ${defaultRequestTimeoutMs}]
  --consistency <MODE>     linearizable | serializable       [default: linearizable]
  --json                   machine-readable output
  -h, --help               help (also after a subcommand)`;

const subcommandHelp: Record<string, string> = {
  put: `rustkvd-cli put KEY VALUE [--ttl SECS] [--if-version V]
  Writes KEY. Prints "OK (version: N)". --if-version makes it a compare-and-set (0 = must not exist).`,
  get: `rustkvd-cli get KEY [--version V]
  Prints the value. --version reads the value as of that MVCC version. Not found: message on stderr, exit 1.`,
  delete: `rustkvd-cli delete KEY [--if-version V]
  Deletes KEY (a tombstone version). Prints "OK (version: N)"; an absent key: message on
  stderr, exit 1.`,
  scan: `rustkvd-cli scan [--prefix P | --start S [--end E]] [--limit N] [--version V] [--keys-only]
  Lists keys in order, up to --limit (default ${defaultScanLimit}, max ${maxScanLimit}).`,
  watch: `rustkvd-cli watch (--prefix P | --key K) [--start-version V] [--prev-kv]
  Streams PUT/DELETE events until Ctrl-C; resumes across reconnects without gaps. With
  --timeout, exits 1 when no node serves the watch for that long.`,
  status: `rustkvd-cli status
  Prints node id, role, term, leader, commit and applied indices, peers, and each peer's
  health (healthy, suspect or down; when last heard; heartbeat round trip).`,
  bench: `rustkvd-cli bench [--operations N | --duration SECS] [--concurrency C] [--value-size B]
                  [--read-ratio R] [--key-space K] [--inflight D] [--connections N] [--warmup SECS]
  Closed-loop load generator: C workers, each keeping D requests in flight.`,
  member: `rustkvd-cli member list
  rustkvd-cli member add NODE_ID HOST:PORT
  rustkvd-cli member remove NODE_ID
  Lists or changes the cluster's members (one change at a time). An added member is a learner
  until it has caught up, then a voter. A removal that would leave fewer voters answering the
  leader than a quorum is refused.`,
  "transfer-leader": `rustkvd-cli transfer-leader NODE_ID
  Hands leadership to NODE_ID.`,
  locate: `rustkvd-cli locate KEY
  Prints the owner and replicas of KEY on the consistent-hash ring (the placement sharding
  would use), and the members that store it: today all of them (one Raft group).`,
  compact: `rustkvd-cli compact VERSION
  Drops MVCC history older than VERSION on every node.`,
  txn: `rustkvd-cli txn [--if COMPARE]... [--then OP]... [--else OP]...
  Atomically: if every COMPARE holds, runs the --then operations, else the --else ones.
  COMPARE: 'version(KEY) OP N' (0 = KEY does not exist) or 'value(KEY) OP VALUE', OP one of
  = != > < (blanks around VALUE dropped). OP: 'put KEY VALUE' (VALUE: the rest of the text),
  'delete KEY' or 'get KEY'. Prints SUCCEEDED or FAILED with the
  revision, then one line per operation; exit 1 when the comparisons failed.
  Example: rustkvd-cli txn --if 'version(lock) = 0' --then 'put lock me' --else 'get lock'`,
};

/** Top-level usage text. */
export const cliUsage = `rustkvd-cli — client for a rustkvd cluster

USAGE:
  rustkvd-cli [GLOBAL OPTIONS] <COMMAND> [ARGS]

COMMANDS:
  put KEY VALUE            write a key                 get KEY [--version V]   read a key
  delete KEY               delete a key                scan --prefix P         list keys
  watch --prefix P         stream changes              status                  node and cluster health
  bench                    load test                   member list|add|remove  membership
  transfer-leader NODE     move leadership             locate KEY              ring placement
  compact VERSION          drop old MVCC history       txn --if C --then OP    compare and swap

${globalHelp}

EXIT CODES: 0 ok, 1 failure or not found, 2 usage error.

EXAMPLE:
  rustkvd-cli --peers localhost:7001,localhost:7002,localhost:7003 put user:1001 '{"name":"Alice"}'
`;

/** Help text of one subcommand (or the top-level usage). */
export function helpFor(name: string | undefined): string {
  const sub = name === undefined
    ? undefined
    : subcommandHelp[name === "member-list" ? "member" : name];
  return sub === undefined ? cliUsage : `USAGE:\n  ${sub}\n\n${globalHelp}\n`;
}

function nonNegativeInt(
  raw: string | undefined,
  flag: string,
): number | undefined | { error: string } {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
    return { error: `${flag}: expected a non-negative integer, got ${JSON.stringify(raw)}` };
  }
  return Number(raw);
}

/** Options every command takes. */
const globalFlags = new Set(["peers", "timeout", "json", "consistency", "help"]);

/**
 * The options each command takes besides the global ones (`--version` alone
 * prints the tool's version; with a value it is get's and scan's revision).
 */
const flagsOf: Record<string, string[]> = {
  put: ["ttl", "if-version"],
  get: ["version"],
  delete: ["if-version"],
  scan: ["prefix", "start", "end", "limit", "version", "keys-only"],
  watch: ["key", "prefix", "start-version", "prev-kv"],
  status: [],
  bench: [
    "operations",
    "duration",
    "concurrency",
    "value-size",
    "read-ratio",
    "key-space",
    "inflight",
    "connections",
    "warmup",
  ],
  member: [],
  "transfer-leader": [],
  locate: [],
  compact: [],
  txn: ["if", "then", "else"],
};

/** Parses `rustkvd-cli` argv. Never throws. */
export function parseCliArgs(argv: string[]): ParsedCli {
  // `deno task cli -- put k v` hands the script the "--" too: it separates the task's arguments,
  // not ours (parseArgs would take every flag after it for a positional).
  if (argv[0] === "--") argv = argv.slice(1);
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      tokens: true,
      allowPositionals: true,
      options: {
        peers: { type: "string" },
        timeout: { type: "string" },
        json: { type: "boolean" },
        consistency: { type: "string" },
        help: { type: "boolean", short: "h" },
        version: { type: "string", short: "V" },
        ttl: { type: "string" },
        "if-version": { type: "string" },
        prefix: { type: "string" },
        start: { type: "string" },
        end: { type: "string" },
        key: { type: "string" },
        limit: { type: "string" },
        "keys-only": { type: "boolean" },
        "start-version": { type: "string" },
        "prev-kv": { type: "boolean" },
        operations: { type: "string" },
        duration: { type: "string" },
        concurrency: { type: "string" },
        "value-size": { type: "string" },
        "read-ratio": { type: "string" },
        "key-space": { type: "string" },
        inflight: { type: "string" },
        connections: { type: "string" },
        warmup: { type: "string" },
        if: { type: "string", multiple: true },
        then: { type: "string", multiple: true },
        else: { type: "string", multiple: true },
      },
    });
  } catch (e) {
    // `--version` with no value means "print the tool's version".
    if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-V")) {
      return { kind: "version" };
    }
    return { kind: "error", message: (e as Error).message, usage: cliUsage };
  }
  const { values, positionals } = parsed;
  const repeated = repeatedOption(parsed.tokens, new Set(["if", "then", "else"]));
  if (repeated) {
    return { kind: "error", message: repeated, usage: helpFor(positionals[0]) };
  }
  const [sub, ...args] = positionals;
  const fail = (message: string): ParsedCli => ({ kind: "error", message, usage: helpFor(sub) });

  if (values.help) return { kind: "help", text: helpFor(sub === "member" ? "member" : sub) };
  if (sub === undefined) {
    return values.version !== undefined
      ? fail("--version needs a subcommand (get KEY --version V)")
      : fail("missing command");
  }

  const peers: string[] = [];
  for (
    const p of (values.peers ?? "127.0.0.1:7001").split(",").map((s) => s.trim()).filter((s) =>
      s !== ""
    )
  ) {
    const hp = parseHostPort(p, "--peers");
    if (typeof hp !== "string") return fail(hp.error);
    peers.push(hp);
  }
  if (peers.length === 0) return fail("--peers: at least one endpoint is needed");
  const timeout = nonNegativeInt(values.timeout, "--timeout");
  if (typeof timeout === "object") return fail(timeout.error);
  if (timeout !== undefined && (timeout < 1 || timeout > maxRequestTimeoutMs)) {
    return fail(`--timeout: must be between 1 and ${maxRequestTimeoutMs} ms, got ${timeout}`);
  }
  const consistency = values.consistency ?? "linearizable";
  if (consistency !== "linearizable" && consistency !== "serializable") {
    return fail(
      `--consistency: expected linearizable or serializable, got ${JSON.stringify(consistency)}`,
    );
  }
  const global: GlobalOptions = {
    peers,
    timeoutMs: timeout ?? defaultRequestTimeoutMs,
    timeoutGivenMs: timeout,
    json: values.json ?? false,
    consistency,
  };

  // A flag another command takes is refused, not ignored: `put k v --version 3` must not
  // become an unconditional write for someone who meant --if-version.
  const allowed = flagsOf[sub];
  if (allowed !== undefined) {
    for (const [flag, value] of Object.entries(values)) {
      if (value === undefined || globalFlags.has(flag) || allowed.includes(flag)) continue;
      return fail(
        `${sub} does not take --${flag}` +
          (allowed.length > 0 ? ` (its options: ${allowed.map((f) => `--${f}`).join(", ")})` : ""),
      );
    }
  }

  const ints: Record<string, number | undefined> = {};
  for (
    const flag of [
      "ttl",
      "if-version",
      "version",
      "limit",
      "start-version",
      "operations",
      "duration",
      "concurrency",
      "value-size",
      "key-space",
      "inflight",
      "connections",
      "warmup",
    ] as const
  ) {
    const v = nonNegativeInt(values[flag], `--${flag}`);
    if (typeof v === "object") return fail(v.error);
    ints[flag] = v;
  }
  const positional = (count: number, names: string): string[] | ParsedCli => {
    if (args.length !== count) {
      return fail(
        `${sub} expects ${names} (${count} argument${count === 1 ? "" : "s"}), got ${args.length}`,
      );
    }
    return args;
  };
  const run = (command: CliCommand): ParsedCli => ({ kind: "run", global, command });

  switch (sub) {
    case "put": {
      const a = positional(2, "KEY VALUE");
      if (!Array.isArray(a)) return a;
      if (ints.ttl === 0) return fail("--ttl: must be at least 1 second");
      return run({
        name: "put",
        key: a[0],
        value: a[1],
        ttlSecs: ints.ttl,
        ifVersion: ints["if-version"],
      });
    }
    case "get": {
      const a = positional(1, "KEY");
      if (!Array.isArray(a)) return a;
      return run({ name: "get", key: a[0], version: ints.version });
    }
    case "delete": {
      const a = positional(1, "KEY");
      if (!Array.isArray(a)) return a;
      return run({ name: "delete", key: a[0], ifVersion: ints["if-version"] });
    }
    case "scan": {
      const a = positional(0, "no positional arguments");
      if (!Array.isArray(a)) return a;
      if (values.prefix !== undefined && (values.start !== undefined || values.end !== undefined)) {
        return fail("scan: use either --prefix or --start/--end, not both");
      }
      if (
        values.start !== undefined && values.end !== undefined && values.end !== "" &&
        compareBytes(utf8(values.start), utf8(values.end)) >= 0
      ) {
        return fail("scan: --start must sort before --end (the range is [start, end))");
      }
      const limit = ints.limit ?? defaultScanLimit;
      if (limit < 1 || limit > maxScanLimit) {
        return fail(`--limit: must be between 1 and ${maxScanLimit}, got ${limit}`);
      }
      return run({
        name: "scan",
        prefix: values.prefix,
        start: values.start,
        end: values.end,
        limit,
        version: ints.version,
        keysOnly: values["keys-only"] ?? false,
      });
    }
    case "watch": {
      const a = positional(0, "no positional arguments");
      if (!Array.isArray(a)) return a;
      if ((values.prefix === undefined) === (values.key === undefined)) {
        return fail("watch: give exactly one of --prefix or --key");
      }
      return run({
        name: "watch",
        prefix: values.prefix,
        key: values.key,
        startVersion: ints["start-version"],
        prevKv: values["prev-kv"] ?? false,
      });
    }
    case "status": {
      const a = positional(0, "no arguments");
      if (!Array.isArray(a)) return a;
      return run({ name: "status" });
    }
    case "bench": {
      const a = positional(0, "no positional arguments");
      if (!Array.isArray(a)) return a;
      const ratioText = values["read-ratio"];
      const readRatio = ratioText === undefined ? 0.8 : Number(ratioText);
      if (
        (ratioText !== undefined && !/^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(ratioText)) ||
        !(readRatio >= 0 && readRatio <= 1)
      ) {
        return fail(`--read-ratio: expected a number in [0, 1], got ${JSON.stringify(ratioText)}`);
      }
      if (ints.operations !== undefined && ints.duration !== undefined) {
        return fail("bench: use --operations or --duration, not both");
      }
      for (const flag of ["operations", "duration", "key-space"] as const) {
        if (ints[flag] === 0) return fail(`--${flag}: must be at least 1`);
      }
      const concurrency = ints.concurrency ?? 64;
      const inflight = ints.inflight ?? 1;
      const connections = ints.connections ?? 1;
      const valueSize = ints["value-size"] ?? 64;
      if (concurrency < 1 || concurrency > 10_000) {
        return fail(`--concurrency: must be between 1 and 10000, got ${concurrency}`);
      }
      if (inflight < 1 || inflight > 1_024) {
        return fail(`--inflight: must be between 1 and 1024, got ${inflight}`);
      }
      if (connections < 1 || connections > 256) {
        return fail(`--connections: must be between 1 and 256, got ${connections}`);
      }
      if (valueSize > 1024 * 1024) {
        return fail(`--value-size: must be at most 1048576 bytes, got ${valueSize}`);
      }
      return run({
        name: "bench",
        operations: ints.operations ?? (ints.duration === undefined ? 100_000 : undefined),
        durationSecs: ints.duration,
        concurrency,
        valueSize,
        readRatio,
        keySpace: ints["key-space"] ?? 100_000,
        inflight,
        connections,
        warmupSecs: ints.warmup ?? 1,
      });
    }
    case "member": {
      const [action, ...rest] = args;
      if (action === "list" && rest.length === 0) return run({ name: "member-list" });
      if (action === "add" && rest.length === 2) {
        const hp = parseHostPort(rest[1], "member add");
        if (typeof hp !== "string") return fail(hp.error);
        return run({
          name: "member-add",
          nodeId: rest[0],
          addr: hp,
        });
      }
      if (action === "remove" && rest.length === 1) {
        return run({ name: "member-remove", nodeId: rest[0] });
      }
      return fail("member: expected 'list', 'add NODE_ID HOST:PORT' or 'remove NODE_ID'");
    }
    case "transfer-leader": {
      const a = positional(1, "NODE_ID");
      if (!Array.isArray(a)) return a;
      return run({ name: "transfer-leader", nodeId: a[0] });
    }
    case "locate": {
      const a = positional(1, "KEY");
      if (!Array.isArray(a)) return a;
      return run({ name: "locate", key: a[0] });
    }
    case "compact": {
      const a = positional(1, "VERSION");
      if (!Array.isArray(a)) return a;
      const v = nonNegativeInt(a[0], "compact");
      if (typeof v !== "number") return fail("compact: VERSION must be a non-negative integer");
      return run({ name: "compact", version: v });
    }
    case "txn": {
      const a = positional(0, "no positional arguments");
      if (!Array.isArray(a)) return a;
      const compare: TxnCompareInput[] = [];
      for (const text of values.if ?? []) {
        const c = parseCompare(text);
        if ("error" in c) return fail(c.error);
        compare.push(c);
      }
      const lists: TxnOpInput[][] = [];
      for (const [flag, texts] of [["--then", values.then], ["--else", values.else]] as const) {
        const ops: TxnOpInput[] = [];
        for (const text of texts ?? []) {
          const op = parseTxnOp(text, flag);
          if ("error" in op) return fail(op.error);
          ops.push(op);
        }
        lists.push(ops);
      }
      if (compare.length + lists[0].length + lists[1].length === 0) {
        return fail("txn: give at least one --if, --then or --else");
      }
      return run({ name: "txn", compare, success: lists[0], failure: lists[1] });
    }
    default:
      return { kind: "error", message: `unknown command ${JSON.stringify(sub)}`, usage: cliUsage };
  }
}

const compareOperators: Record<string, CompareResult> = {
  "=": "equal",
  "==": "equal",
  "!=": "notEqual",
  ">": "greater",
  "<": "less",
};

/** `version(KEY) OP N` or `value(KEY) OP VALUE` (OP one of = != > <; == is =). */
export function parseCompare(text: string): TxnCompareInput | { error: string } {
  const m = /^\s*(version|value)\(([^)]+)\)\s*(==|!=|=|>|<)\s*(.*)$/s.exec(text);
  if (!m) {
    return {
      error: `--if: expected 'version(KEY) OP N' or 'value(KEY) OP VALUE' with OP one of ` +
        `= != > <, got ${JSON.stringify(text)}`,
    };
  }
  const [, target, key, op, rest] = m;
  if (rest.startsWith("=")) {
    return { error: `--if: OP is one of = != > < (no >= or <=), got ${JSON.stringify(text)}` };
  }
  const result = compareOperators[op];
  // Blanks around the operand are not part of it.
  const operand = rest.trim();
  if (target === "value") return { key, result, value: operand };
  const version = nonNegativeInt(operand, `--if ${JSON.stringify(text)}`);
  if (typeof version !== "number") {
    return { error: `--if: a version is a non-negative integer, got ${JSON.stringify(operand)}` };
  }
  return { key, result, version };
}

/** `put KEY VALUE` (the value is the rest of the text), `delete KEY` or `get KEY`. */
export function parseTxnOp(text: string, flag: string): TxnOpInput | { error: string } {
  const m = /^\s*(put|delete|get)\s+(\S+)(?:\s(.*))?$/s.exec(text);
  // Trailing blanks after a delete's or get's key are not a value.
  const value = m?.[1] !== "put" && m?.[3]?.trim() === "" ? undefined : m?.[3];
  if (!m || (m[1] === "put") !== (value !== undefined)) {
    return {
      error: `${flag}: expected 'put KEY VALUE', 'delete KEY' or 'get KEY', got ` +
        JSON.stringify(text),
    };
  }
  const key = m[2];
  if (m[1] === "put") return { put: key, value: value! };
  return m[1] === "delete" ? { delete: key } : { get: key };
}
