/**
 * Connection and server commands: PING, ECHO, QUIT, SELECT 0, HELLO 2,
 * CLIENT (SETNAME/GETNAME/ID/INFO/SETINFO), COMMAND (COUNT/DOCS/INFO/list),
 * INFO (server, clients, memory, stats, replication, keyspace), CONFIG GET (always empty), ROLE,
 * WAIT, READONLY and READWRITE. These
 * are answered by this node alone and never touch Raft (INFO keyspace and
 * DBSIZE count this replica's applied keys; INFO may reuse a recent count of
 * a large key space, keyspace_cache.ts).
 *
 * @module
 */

import type { NodeStatusInfo } from "../node/kv_node.ts";
import { splitHostPort } from "../common/host_port.ts";
import { rustkvdVersion } from "../common/version.ts";
import { defaultRequestTimeoutMs, maxRespConnections } from "../common/limits.ts";
import {
  argInteger,
  argText,
  argWord,
  type CommandContext,
  type CommandSpec,
  ReplyError,
} from "./command_table.ts";
import { keyspaceCounts } from "./commands_keys.ts";
import { KeyspaceCache } from "./keyspace_cache.ts";
import type { RespStore } from "./store.ts";
import type { Session } from "./session.ts";

/** The Redis version we tell clients, so feature probes pick RESP2 paths they support. */
const compatibleRedisVersion = "7.0.0";

/** Commands whose key arguments are not at position 1 only: [first, last, step]. */
const keyPositions: Record<string, [number, number, number]> = {
  mget: [1, -1, 1],
  mset: [1, -1, 2],
  del: [1, -1, 1],
  unlink: [1, -1, 1],
  exists: [1, -1, 1],
  touch: [1, -1, 1],
  msetnx: [1, -1, 2],
  rename: [1, 2, 1],
  renamenx: [1, 2, 1],
};

function hello(ctx: CommandContext, args: Uint8Array[]): void {
  let i = 1;
  if (args.length > 1) {
    const proto = argText(args[1]);
    if (proto !== "2") {
      throw new ReplyError(
        /^\d+$/.test(proto)
          ? "NOPROTO unsupported protocol version"
          : "ERR Protocol version is not an integer or out of range",
      );
    }
    i = 2;
  }
  for (; i < args.length; i++) {
    const w = argWord(args[i]);
    if (w === "SETNAME" && i + 1 < args.length) ctx.session.name = checkName(argText(args[++i]));
    else if (w === "AUTH" && i + 2 < args.length) {
      checkCredentials(argText(args[i + 1]));
      i += 2;
    } else throw new ReplyError(`ERR Syntax error in HELLO option '${argText(args[i])}'`);
  }
  const leader = ctx.store.node.replica.isLeader;
  ctx.out.arrayHeader(14)
    .bulk("server").bulk("redis")
    .bulk("version").bulk(compatibleRedisVersion)
    .bulk("proto").integer(2)
    .bulk("id").integer(ctx.session.id)
    .bulk("mode").bulk("standalone")
    .bulk("role").bulk(leader ? "master" : "replica")
    .bulk("modules").arrayHeader(0);
}

/**
 * No passwords exist: like Redis's default user without one ("nopass"),
 * any password opens `default`; any other user is refused.
 */
function checkCredentials(user: string): void {
  if (user !== "default") {
    throw new ReplyError("WRONGPASS invalid username-password pair or user is disabled.");
  }
}

/** AUTH [user] password, as Redis answers it when no password is configured. */
function auth(ctx: CommandContext, args: Uint8Array[]): void {
  if (args.length === 2) {
    throw new ReplyError(
      "ERR AUTH <password> called without any password configured for the default user. " +
        "Are you sure your configuration is correct?",
    );
  }
  if (args.length !== 3) throw new ReplyError("ERR syntax error");
  checkCredentials(argText(args[1]));
  ctx.out.simple("OK");
}

function checkName(name: string): string {
  if (!/^[\x21-\x7e]*$/.test(name)) {
    throw new ReplyError(
      "ERR Client names cannot contain spaces, newlines or special characters.",
    );
  }
  return name;
}

/** CLIENT's subcommands and their arities (words, CLIENT included). */
const clientArity: Record<string, number> = {
  SETNAME: 3,
  GETNAME: 2,
  ID: 2,
  INFO: 2,
  LIST: 2,
  SETINFO: 4,
  HELP: 2,
};

const clientHelp = [
  "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
  "GETNAME",
  "    Return the name of the current connection.",
  "ID",
  "    Return the ID of the current connection.",
  "INFO",
  "    Return information about the current client connection.",
  "LIST",
  "    Return information about client connections.",
  "SETINFO <option> <value>",
  "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
  "SETNAME <name>",
  "    Assign the name <name> to the current connection.",
  "HELP",
  "    Print this help.",
];

/** One connection as CLIENT INFO and CLIENT LIST describe it (the fields clients read). */
function clientLine(s: Session, nowMs: number): string {
  const age = Math.max(0, Math.floor((nowMs - s.connectedAtMs) / 1000));
  const idle = Math.max(0, Math.floor((nowMs - s.lastActiveMs) / 1000));
  return `id=${s.id} addr=${s.remoteAddr} name=${s.name} age=${age} idle=${idle} flags=N ` +
    `db=0 cmd=${s.lastCommand} resp=2\n`;
}

function client(ctx: CommandContext, args: Uint8Array[]): void {
  const sub = argWord(args[1]);
  const s = ctx.session;
  const arity = clientArity[sub];
  if (arity === undefined) {
    throw new ReplyError(`ERR unknown subcommand '${argText(args[1])}'. Try CLIENT HELP.`);
  }
  if (args.length !== arity) {
    throw new ReplyError(
      `ERR wrong number of arguments for 'client|${sub.toLowerCase()}' command`,
    );
  }
  const nowMs = ctx.store.node.clock.nowMs();
  if (sub === "SETNAME") {
    s.name = checkName(argText(args[2]));
    ctx.out.simple("OK");
  } else if (sub === "GETNAME") {
    if (s.name === "") ctx.out.nil();
    else ctx.out.bulk(s.name);
  } else if (sub === "ID") {
    ctx.out.integer(s.id);
  } else if (sub === "INFO") {
    ctx.out.bulk(clientLine(s, nowMs));
  } else if (sub === "LIST") {
    ctx.out.bulk([...ctx.sessions].map((other) => clientLine(other, nowMs)).join(""));
  } else if (sub === "SETINFO") {
    const attr = argWord(args[2]);
    if (attr !== "LIB-NAME" && attr !== "LIB-VER") {
      throw new ReplyError(`ERR Unrecognized option '${argText(args[2])}'`);
    }
    ctx.out.simple("OK");
  } else {
    ctx.out.arrayHeader(clientHelp.length);
    for (const line of clientHelp) ctx.out.simple(line);
  }
}

/** A command's key arguments as [first, last, step] (COMMAND's fields); undefined: it has none. */
function keyArgs(spec: CommandSpec): [number, number, number] | undefined {
  const keyless = serverNames.has(spec.name) || ["scan", "keys", "dbsize"].includes(spec.name);
  return keyless ? undefined : keyPositions[spec.name] ?? [1, 1, 1];
}

function commandInfo(ctx: CommandContext, spec: CommandSpec): void {
  const [first, last, step] = keyArgs(spec) ?? [0, 0, 0];
  ctx.out.arrayHeader(6).bulk(spec.name).integer(spec.arity);
  ctx.out.arrayHeader(1).simple(spec.write ? "write" : "readonly");
  ctx.out.integer(first).integer(last).integer(step);
}

function command(ctx: CommandContext, args: Uint8Array[]): void {
  const sub = args.length > 1 ? argWord(args[1]) : "";
  if (sub === "") {
    ctx.out.arrayHeader(ctx.table.size);
    for (const spec of ctx.table.values()) commandInfo(ctx, spec);
  } else if (sub === "COUNT") {
    ctx.out.integer(ctx.table.size);
  } else if (sub === "DOCS") {
    // No documentation yet: an empty map (a flat array in RESP2) is a valid answer.
    ctx.out.arrayHeader(0);
  } else if (sub === "INFO") {
    const names = args.length > 2 ? args.slice(2).map((a) => argText(a).toLowerCase()) : [
      ...ctx.table.keys(),
    ];
    ctx.out.arrayHeader(names.length);
    for (const n of names) {
      const spec = ctx.table.get(n);
      if (spec) commandInfo(ctx, spec);
      else ctx.out.nilArray();
    }
  } else if (sub === "LIST" && args.length === 2) {
    ctx.out.bulkArray([...ctx.table.keys()]);
  } else if (sub === "GETKEYS" && args.length > 2) {
    ctx.out.bulkArray(commandKeys(ctx, args.slice(2)));
  } else if (sub === "HELP" && args.length === 2) {
    ctx.out.arrayHeader(commandHelp.length);
    for (const line of commandHelp) ctx.out.simple(line);
  } else {
    throw new ReplyError(`ERR unknown subcommand '${argText(args[1])}'. Try COMMAND HELP.`);
  }
}

const commandHelp = [
  "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
  "(no subcommand)",
  "    Return details about all commands.",
  "COUNT",
  "    Return the total number of commands.",
  "DOCS [<command-name> ...]",
  "    Return documentation details about multiple commands (none yet).",
  "GETKEYS <full-command>",
  "    Return the keys from a full command.",
  "INFO [<command-name> ...]",
  "    Return details about multiple commands.",
  "LIST",
  "    Return a list of all commands.",
  "HELP",
  "    Print this help.",
];

/** COMMAND GETKEYS: the key arguments of a full command, by its key positions. */
function commandKeys(ctx: CommandContext, full: Uint8Array[]): Uint8Array[] {
  const spec = ctx.table.get(argText(full[0]).toLowerCase());
  if (!spec) throw new ReplyError("ERR Invalid command specified");
  if (spec.arity > 0 ? full.length !== spec.arity : full.length < -spec.arity) {
    throw new ReplyError("ERR Invalid number of arguments specified for command");
  }
  const positions = keyArgs(spec);
  if (positions === undefined) throw new ReplyError("ERR The command has no key arguments");
  const [first, last, step] = positions;
  const end = last < 0 ? full.length + last : last;
  const keys: Uint8Array[] = [];
  for (let i = first; i <= end; i += step) keys.push(full[i]);
  return keys;
}

async function info(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const wanted = new Set(args.slice(1).map((a) => argText(a).toLowerCase()));
  const all = wanted.size === 0 || wanted.has("all") || wanted.has("everything") ||
    wanted.has("default");
  const st = ctx.store.node.status();
  const sections: string[] = [];
  if (all || wanted.has("server")) {
    sections.push([
      "# Server",
      `redis_version:${compatibleRedisVersion}`,
      `rustkvd_version:${rustkvdVersion}`,
      "redis_mode:standalone",
      `process_id:${Deno.pid}`,
      `tcp_port:${ctx.respAddr.replace(/^.*:/, "")}`,
      `node_id:${st.nodeId}`,
      `cluster_id:${st.clusterId}`,
    ].join("\r\n"));
  }
  if (all || wanted.has("clients")) {
    sections.push([
      "# Clients",
      `connected_clients:${ctx.stats.connectedClients}`,
      `maxclients:${maxRespConnections}`,
    ].join("\r\n"));
  }
  if (all || wanted.has("memory")) {
    const m = Deno.memoryUsage();
    const used = m.heapUsed + m.external;
    sections.push([
      "# Memory",
      `used_memory:${used}`,
      `used_memory_human:${humanBytes(used)}`,
      `used_memory_rss:${m.rss}`,
      `used_memory_rss_human:${humanBytes(m.rss)}`,
      `heap_used:${m.heapUsed}`,
      `heap_total:${m.heapTotal}`,
      `external_memory:${m.external}`,
      "maxmemory:0",
    ].join("\r\n"));
  }
  if (all || wanted.has("stats")) {
    const s = ctx.stats;
    sections.push([
      "# Stats",
      `total_connections_received:${s.connectionsReceived}`,
      `total_commands_processed:${s.commandsProcessed}`,
      `total_error_replies:${s.errorReplies}`,
      `instantaneous_ops_per_sec:${s.instantaneousOpsPerSec()}`,
      `total_net_input_bytes:${s.netInputBytes}`,
      `total_net_output_bytes:${s.netOutputBytes}`,
      `rejected_connections:${s.rejectedConnections}`,
    ].join("\r\n"));
  }
  if (all || wanted.has("replication")) {
    const leader = st.role === "leader";
    const lines = [
      "# Replication",
      `role:${leader ? "master" : "slave"}`,
      `raft_role:${st.role}`,
      `raft_term:${st.term}`,
      `leader_id:${st.leaderId}`,
      `leader_addr:${st.leaderAddr}`,
      `commit_index:${st.commitIndex}`,
      `applied_index:${st.appliedIndex}`,
      `revision:${st.revision}`,
    ];
    const topology = await respTopology(ctx, st);
    if (topology.role === "master") {
      lines.push(`connected_slaves:${topology.replicas.length}`);
      topology.replicas.forEach((r, i) =>
        lines.push(
          `slave${i}:ip=${r.host},port=${r.port},state=online,offset=${r.offset},lag=0,id=${r.id}`,
        )
      );
    } else {
      if (topology.master) {
        lines.push(`master_host:${topology.master.host}`, `master_port:${topology.master.port}`);
      }
      lines.push(`master_link_status:${st.leaderId ? "up" : "down"}`);
    }
    sections.push(lines.join("\r\n"));
  }
  if (all || wanted.has("keyspace")) {
    const c = await keyspaceCache(ctx.store).get();
    const db0 = `db0:keys=${c.keys},expires=${c.expires},avg_ttl=${c.avgTtlMs}`;
    sections.push(["# Keyspace", ...(c.keys > 0 ? [db0] : [])].join("\r\n"));
  }
  // No section asked for exists: an empty answer, as Redis gives.
  ctx.out.bulk(sections.length === 0 ? "" : sections.join("\r\n\r\n") + "\r\n");
}

/** Each node's INFO keyspace cache (one RespStore per node). */
const keyspaceCaches = new WeakMap<RespStore, KeyspaceCache>();

function keyspaceCache(store: RespStore): KeyspaceCache {
  let cache = keyspaceCaches.get(store);
  if (cache === undefined) {
    cache = new KeyspaceCache(store.node.clock, () => keyspaceCounts(store, "serializable"));
    keyspaceCaches.set(store, cache);
  }
  return cache;
}

/** Bytes the way Redis's *_human fields print them (1.50K, 2.25M). */
export function humanBytes(n: number): string {
  const units = ["B", "K", "M", "G", "T"];
  let u = 0;
  let v = n;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n}B` : `${v.toFixed(2)}${units[u]}`;
}

/** A member as ROLE and INFO replication name it: its RESP host and port. */
interface RespMember {
  id: string;
  host: string;
  port: number;
  offset: number;
}

/**
 * This node's role (from `st`, its status) and the others' RESP addresses (PeerRespAddrs). A member
 * whose RESP address is unknown (it serves none, or has not answered) is
 * left out: clients connect to what these replies name.
 */
async function respTopology(ctx: CommandContext, st: NodeStatusInfo): Promise<
  | { role: "master"; replicas: RespMember[] }
  | { role: "slave"; master: RespMember | undefined }
> {
  const addrs = await ctx.store.peerRespAddrs.current();
  const named = (m: { id: string; matchIndex: number }): RespMember | undefined => {
    const addr = addrs.get(m.id);
    return addr ? { id: m.id, ...splitHostPort(addr), offset: m.matchIndex } : undefined;
  };
  if (st.role === "leader") {
    const replicas = st.members.filter((m) => m.id !== st.nodeId).map(named)
      .filter((r): r is RespMember => r !== undefined);
    return { role: "master", replicas };
  }
  const leader = st.members.find((m) => m.id === st.leaderId);
  return { role: "slave", master: leader && named(leader) };
}

async function role(ctx: CommandContext): Promise<void> {
  const st = ctx.store.node.status();
  const topology = await respTopology(ctx, st);
  if (topology.role === "master") {
    ctx.out.arrayHeader(3).bulk("master").integer(st.appliedIndex);
    ctx.out.arrayHeader(topology.replicas.length);
    for (const r of topology.replicas) {
      ctx.out.bulkArray([r.host, String(r.port), String(r.offset)]);
    }
    return;
  }
  const master = topology.master;
  ctx.out.arrayHeader(5).bulk("slave").bulk(master?.host ?? "").integer(master?.port ?? 0)
    .bulk(master ? "connected" : "connect").integer(st.appliedIndex);
}

/**
 * WAIT numreplicas timeout: how many replicas hold every write this
 * connection was acknowledged. Commands of a connection run in order, so
 * those writes are all at or below the leader's applied index when WAIT
 * runs; it counts the other members whose log matches up to there, waiting
 * (per tick) until `numreplicas` do or `timeout` ms passed — 0, "forever"
 * in Redis, is bounded by the request deadline here. A follower answers
 * with Redis' error for replicas: only the leader knows its followers.
 */
async function wait(ctx: CommandContext, args: Uint8Array[]): Promise<void> {
  const wanted = argInteger(args[1]);
  const timeoutMs = argInteger(args[2]);
  if (timeoutMs < 0) throw new ReplyError("ERR timeout is negative");
  const node = ctx.store.node;
  const first = node.status();
  if (first.role !== "leader") {
    throw new ReplyError("ERR WAIT cannot be used with replica instances");
  }
  const target = first.appliedIndex;
  const holding = () => {
    const st = node.status();
    if (st.role !== "leader") return 0;
    return st.members.filter((m) => m.id !== st.nodeId && m.matchIndex >= target).length;
  };
  const deadline = node.clock.nowMs() + (timeoutMs === 0 ? defaultRequestTimeoutMs : timeoutMs);
  let count = holding();
  while (count < wanted && node.clock.nowMs() < deadline) {
    await node.clock.sleep(node.config.tickMs);
    count = holding();
  }
  ctx.out.integer(count);
}

/** The connection and server commands of the table. */
export const serverCommands: CommandSpec[] = [
  {
    name: "ping",
    arity: -1,
    write: false,
    overlap: "local",
    handler: (c, a) => {
      if (a.length > 2) throw new ReplyError("ERR wrong number of arguments for 'ping' command");
      if (a.length === 2) c.out.bulk(a[1]);
      else c.out.simple("PONG");
    },
  },
  {
    name: "echo",
    arity: 2,
    write: false,
    handler: (c, a) => void c.out.bulk(a[1]),
    overlap: "local",
  },
  {
    name: "quit",
    arity: -1,
    write: false,
    handler: (c) => {
      c.out.simple("OK");
      return "close";
    },
  },
  {
    name: "select",
    arity: 2,
    write: false,
    handler: (c, a) => {
      if (argInteger(a[1]) !== 0) throw new ReplyError("ERR DB index is out of range");
      c.out.simple("OK");
    },
  },
  { name: "hello", arity: -1, write: false, handler: hello },
  { name: "auth", arity: -2, write: false, handler: auth },
  { name: "client", arity: -2, write: false, handler: client },
  { name: "command", arity: -1, write: false, handler: command },
  { name: "info", arity: -1, write: false, handler: info },
  {
    name: "config",
    arity: -2,
    write: false,
    handler: (c, a) => {
      // Nothing is configurable over RESP; clients (redis-benchmark) probe CONFIG GET at start.
      if (argWord(a[1]) !== "GET") {
        throw new ReplyError("ERR CONFIG supports only GET here, and reports no parameters");
      }
      c.out.arrayHeader(0);
    },
  },
  { name: "role", arity: 1, write: false, handler: role },
  {
    name: "time",
    arity: 1,
    write: false,
    overlap: "local",
    handler: (c) => {
      // This node's wall clock (millisecond precision): Unix seconds and microseconds.
      const ms = c.store.node.clock.wallMs();
      c.out.arrayHeader(2).bulk(String(Math.floor(ms / 1000))).bulk(String((ms % 1000) * 1000));
    },
  },
  { name: "wait", arity: 3, write: false, handler: wait },
  {
    name: "readonly",
    arity: 1,
    write: false,
    handler: (c) => {
      c.session.consistency = "serializable";
      c.out.simple("OK");
    },
  },
  {
    name: "readwrite",
    arity: 1,
    write: false,
    handler: (c) => {
      c.session.consistency = "linearizable";
      c.out.simple("OK");
    },
  },
];

const serverNames = new Set(serverCommands.map((s) => s.name));
