/**
 * Flags of `rustkvd-server`, parsed and validated into a NodeConfig. Parsing is
 * pure (argv in, config or a usage error out) so it is tested without
 * starting anything; `server.ts` only prints and exits.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { repeatedOption } from "../common/repeated_option.ts";
import { canonicalMemberAddr, isWildcardAddr } from "../common/host_port.ts";
import {
  defaultElectionMs,
  defaultHeartbeatMs,
  defaultHistoryRevisions,
  defaultSnapshotEntries,
  defaultTickMs,
} from "../common/limits.ts";

/** Severity threshold for structured logs. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Everything a node needs to start, after defaults are filled in. */
export interface NodeConfig {
  nodeId: string;
  /** Address the gRPC server listens on (host:port). */
  listenAddr: string;
  /** Address peers and clients are told to use; defaults to listenAddr, with 0.0.0.0 replaced by 127.0.0.1. */
  advertiseAddr: string;
  /** Existing members to join through (host:port); empty = bootstrap a new cluster. */
  peers: string[];
  dataDir: string;
  tickMs: number;
  heartbeatMs: number;
  electionMs: number;
  snapshotEntries: number;
  /** MVCC revisions kept for version reads (0 = all); older history is compacted by the leader. */
  historyRevisions?: number;
  logLevel: LogLevel;
  /** Optional Redis-protocol listener (host:port). */
  respAddr: string | undefined;
  /** Optional static cluster for tests: id -> address. */
  initialCluster: Map<string, string> | undefined;
  /** How this node streams snapshots to lagging followers. */
  snapshotTransport?: "native" | "grpc";
  /**
   * The leader serves linearizable reads from a lease instead of a heartbeat
   * round per batch (default on; lib/node/read_lease.ts).
   */
  readLease?: boolean;
}

/** The outcome of parsing argv: run with a config, print help/version, or fail with usage. */
export type ParsedServerArgs =
  | { kind: "run"; config: NodeConfig }
  | { kind: "help" }
  | { kind: "version" }
  | { kind: "error"; message: string };

/** Usage text for `rustkvd-server --help`. */
export const serverUsage = `rustkvd-server — one node of a rustkvd cluster

USAGE:
  rustkvd-server [OPTIONS]

OPTIONS:
  --node-id <ID>            unique id of this node                      [default: node1]
  --addr <HOST:PORT>        gRPC listen address                         [default: 127.0.0.1:7001]
  --advertise-addr <H:P>    address peers and clients use to reach us   [default: --addr]
  --peers <H:P,H:P,...>     existing members to join; omit to bootstrap a new cluster
  --data-dir <DIR>          where the Raft log and the LSM store live   [default: ./data/<node-id>]
  --heartbeat-ms <MS>       leader heartbeat interval                   [default: ${defaultHeartbeatMs}]
  --election-ms <MS>        base election timeout (randomized to 2x)   [default: ${defaultElectionMs}]
  --tick-ms <MS>            Raft clock tick                             [default: ${defaultTickMs}]
  --snapshot-entries <N>    log entries between log compactions; the last
                            min(5000, N/2) are kept for slow followers  [default: ${defaultSnapshotEntries}]
  --history-revisions <N>   MVCC revisions kept for version reads; 0 = all [default: ${defaultHistoryRevisions}]
  --resp-addr <HOST:PORT>   also serve the Redis protocol (RESP2) here  [default: off]
                            (port 0: any free port, printed at start)
  --snapshot-transport <T>  native | grpc (InstallSnapshot) for snapshots [default: native]
  --read-lease <on|off>     leader answers linearizable reads from a lease
                            (off: a heartbeat round per batch of reads) [default: on]
  --initial-cluster <ID=H:P,...>  start a static cluster (tests)
  --log-level <LEVEL>       debug | info | warn | error                 [default: info]
  -h, --help                print this help
  -V, --version             print the version

EXAMPLE (the three-node start sequence):
  rustkvd-server --node-id node1 --addr 0.0.0.0:7001 --data-dir ./data/node1
  rustkvd-server --node-id node2 --addr 0.0.0.0:7002 --peers localhost:7001 --data-dir ./data/node2
  rustkvd-server --node-id node3 --addr 0.0.0.0:7003 --peers localhost:7001,localhost:7002 --data-dir ./data/node3
`;

/** What a node id may look like: it appears in logs, file names and the ring's hashes. */
export const nodeIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Checks `host:port` (IPv6 in brackets) and returns it normalized, or an error message. */
export function parseHostPort(
  value: string,
  flag: string,
  anyPort = false,
): string | { error: string } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value.trim());
  if (!m) return { error: `${flag}: expected HOST:PORT, got ${JSON.stringify(value)}` };
  const port = Number(m[2]);
  const lowest = anyPort ? 0 : 1;
  if (port < lowest || port > 65535) {
    return { error: `${flag}: port must be ${lowest}..65535, got ${port}` };
  }
  return `${m[1]}:${port}`;
}

function parsePositiveInt(
  value: string | undefined,
  flag: string,
  fallback: number,
  max: number,
): number | { error: string } {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) {
    return { error: `${flag}: expected a positive integer, got ${JSON.stringify(value)}` };
  }
  const n = Number(value);
  if (n < 1 || n > max) return { error: `${flag}: must be between 1 and ${max}, got ${n}` };
  return n;
}

/** Parses `rustkvd-server` argv. Never throws: bad input becomes `{kind: "error"}`. */
export function parseServerArgs(argv: string[]): ParsedServerArgs {
  // `deno task start -- --node-id n1` hands the script the "--" too (see parseCliArgs).
  if (argv[0] === "--") argv = argv.slice(1);
  let values;
  let tokens;
  try {
    ({ values, tokens } = parseArgs({
      args: argv,
      strict: true,
      tokens: true,
      allowPositionals: false,
      options: {
        "node-id": { type: "string" },
        addr: { type: "string" },
        "advertise-addr": { type: "string" },
        "history-revisions": { type: "string" },
        "snapshot-transport": { type: "string" },
        "read-lease": { type: "string" },
        peers: { type: "string" },
        "data-dir": { type: "string" },
        "heartbeat-ms": { type: "string" },
        "election-ms": { type: "string" },
        "tick-ms": { type: "string" },
        "snapshot-entries": { type: "string" },
        "resp-addr": { type: "string" },
        "initial-cluster": { type: "string" },
        "log-level": { type: "string" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
    }));
  } catch (e) {
    return { kind: "error", message: (e as Error).message };
  }
  const repeated = repeatedOption(tokens);
  if (repeated) return { kind: "error", message: repeated };
  if (values.help) return { kind: "help" };
  if (values.version) return { kind: "version" };

  const nodeId = values["node-id"] ?? "node1";
  if (!nodeIdPattern.test(nodeId)) {
    return {
      kind: "error",
      message: `--node-id: use 1-63 letters, digits, '.', '_' or '-', got ${
        JSON.stringify(nodeId)
      }`,
    };
  }
  const listen = parseHostPort(values.addr ?? "127.0.0.1:7001", "--addr");
  if (typeof listen !== "string") return { kind: "error", message: listen.error };
  let advertise: string | { error: string } = values["advertise-addr"] !== undefined
    ? parseHostPort(values["advertise-addr"], "--advertise-addr")
    : listen.replace(/^(0\.0\.0\.0|\[::\]):/, "127.0.0.1:");
  if (typeof advertise !== "string") return { kind: "error", message: advertise.error };
  advertise = canonicalMemberAddr(advertise);
  if (isWildcardAddr(advertise)) {
    return {
      kind: "error",
      message: `--advertise-addr: ${advertise} is not an address peers can reach; give this ` +
        "host's address",
    };
  }

  const peers: string[] = [];
  for (const p of (values.peers ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const hp = parseHostPort(p, "--peers");
    if (typeof hp !== "string") return { kind: "error", message: hp.error };
    peers.push(hp);
  }
  if (values.peers !== undefined && peers.length === 0) {
    // An unset variable in `--peers $PEERS` must not bootstrap a cluster of its own.
    return { kind: "error", message: "--peers: at least one HOST:PORT is needed" };
  }
  if (values["data-dir"] !== undefined && values["data-dir"].trim() === "") {
    return { kind: "error", message: "--data-dir: must not be empty" };
  }

  const tickMs = parsePositiveInt(values["tick-ms"], "--tick-ms", defaultTickMs, 1_000);
  if (typeof tickMs !== "number") return { kind: "error", message: tickMs.error };
  const heartbeatMs = parsePositiveInt(
    values["heartbeat-ms"],
    "--heartbeat-ms",
    defaultHeartbeatMs,
    10_000,
  );
  if (typeof heartbeatMs !== "number") return { kind: "error", message: heartbeatMs.error };
  const electionMs = parsePositiveInt(
    values["election-ms"],
    "--election-ms",
    defaultElectionMs,
    60_000,
  );
  if (typeof electionMs !== "number") return { kind: "error", message: electionMs.error };
  if (heartbeatMs < tickMs) {
    return {
      kind: "error",
      message: `--heartbeat-ms (${heartbeatMs}) must be at least --tick-ms (${tickMs})`,
    };
  }
  if (electionMs < 2 * heartbeatMs) {
    return {
      kind: "error",
      message:
        `--election-ms (${electionMs}) must be at least twice --heartbeat-ms (${heartbeatMs})`,
    };
  }
  const snapshotEntries = parsePositiveInt(
    values["snapshot-entries"],
    "--snapshot-entries",
    defaultSnapshotEntries,
    100_000_000,
  );
  if (typeof snapshotEntries !== "number") return { kind: "error", message: snapshotEntries.error };
  const historyRevisionsText = values["history-revisions"];
  const historyRevisions = historyRevisionsText === "0" ? 0 : parsePositiveInt(
    historyRevisionsText,
    "--history-revisions",
    defaultHistoryRevisions,
    1_000_000_000_000,
  );
  if (typeof historyRevisions !== "number") {
    return { kind: "error", message: historyRevisions.error };
  }

  const logLevel = values["log-level"] ?? "info";
  if (!["debug", "info", "warn", "error"].includes(logLevel)) {
    return {
      kind: "error",
      message: `--log-level: expected debug, info, warn or error, got ${JSON.stringify(logLevel)}`,
    };
  }
  const snapshotTransport = values["snapshot-transport"] ?? "native";
  if (snapshotTransport !== "native" && snapshotTransport !== "grpc") {
    return {
      kind: "error",
      message: `--snapshot-transport: expected native or grpc, got ${
        JSON.stringify(snapshotTransport)
      }`,
    };
  }
  const readLease = values["read-lease"] ?? "on";
  if (readLease !== "on" && readLease !== "off") {
    return {
      kind: "error",
      message: `--read-lease: expected on or off, got ${JSON.stringify(readLease)}`,
    };
  }
  let respAddr: string | undefined;
  if (values["resp-addr"] !== undefined) {
    // Port 0: any free port, printed at start ("serving RESP on HOST:PORT").
    const hp = parseHostPort(values["resp-addr"], "--resp-addr", true);
    if (typeof hp !== "string") return { kind: "error", message: hp.error };
    respAddr = hp;
  }
  let initialCluster: Map<string, string> | undefined;
  if (values["initial-cluster"] !== undefined) {
    initialCluster = new Map();
    for (
      const part of values["initial-cluster"].split(",").map((s) => s.trim()).filter((s) =>
        s !== ""
      )
    ) {
      const eq = part.indexOf("=");
      const id = part.slice(0, eq);
      if (eq <= 0 || !nodeIdPattern.test(id)) {
        return {
          kind: "error",
          message: `--initial-cluster: expected ID=HOST:PORT, got ${JSON.stringify(part)}`,
        };
      }
      const hp = parseHostPort(part.slice(eq + 1), "--initial-cluster");
      if (typeof hp !== "string") return { kind: "error", message: hp.error };
      if (initialCluster.has(id)) {
        return { kind: "error", message: `--initial-cluster: ${id} is listed twice` };
      }
      initialCluster.set(id, hp);
    }
    if (!initialCluster.has(nodeId)) {
      return { kind: "error", message: `--initial-cluster must include this node (${nodeId})` };
    }
    if (peers.length > 0) {
      return { kind: "error", message: "use either --peers or --initial-cluster, not both" };
    }
  }

  return {
    kind: "run",
    config: {
      nodeId,
      listenAddr: listen,
      advertiseAddr: advertise,
      peers,
      dataDir: values["data-dir"] ?? `./data/${nodeId}`,
      tickMs,
      heartbeatMs,
      electionMs,
      snapshotEntries,
      historyRevisions,
      logLevel: logLevel as LogLevel,
      respAddr,
      initialCluster,
      snapshotTransport,
      readLease: readLease === "on",
    },
  };
}
