/**
 * Runs one parsed rustkvd-cli command and returns the process exit code.
 * Output formats follow the seed's walkthrough (`OK (version: N)`, the two
 * status lines); `--json` prints one JSON document instead.
 *
 * The CLI exits without closing its gRPC channels: closing sends an HTTP/2
 * GOAWAY, which Deno 2.9's node:http2 can mishandle on the server side
 * (denoland/deno#36788); a process exit closes the socket plainly.
 *
 * @module
 */

import { fromUtf8 } from "../common/bytes.ts";
import { isKVError, type KVError } from "../common/errors.ts";
import { type CliCommand, ExitCode, type GlobalOptions } from "./cli_args.ts";
import { type KeyValue, KVClient, UnreachableClusterError } from "./kv_client.ts";
import { formatBench, runBench } from "./bench.ts";
import { HashRing } from "../cluster/hash_ring.ts";
import { Router } from "../cluster/router.ts";

/** Where output goes (tests capture it). */
export interface CliOutput {
  out(line: string): void;
  err(line: string): void;
}

const consoleOutput: CliOutput = { out: (l) => console.log(l), err: (l) => console.error(l) };

function kvJson(kv: KeyValue) {
  return {
    key: fromUtf8(kv.key),
    value: fromUtf8(kv.value),
    version: kv.version,
    expiresAtMs: kv.expiresAtMs || undefined,
  };
}

/** Executes `command` and returns the exit code (see ExitCode). */
export async function runCli(
  global: GlobalOptions,
  command: CliCommand,
  io: CliOutput = consoleOutput,
): Promise<number> {
  const client = new KVClient({ endpoints: global.peers, timeoutMs: global.timeoutMs });
  const print = (human: string, json: unknown) =>
    io.out(global.json ? JSON.stringify(json) : human);
  try {
    switch (command.name) {
      case "put": {
        const r = await client.put(command.key, command.value, {
          ttlSecs: command.ttlSecs,
          ifVersion: command.ifVersion,
        });
        print(`OK (version: ${r.version})`, { ok: true, version: r.version });
        return ExitCode.ok;
      }
      case "get": {
        const kv = await client.get(command.key, {
          version: command.version,
          consistency: global.consistency,
        });
        if (!kv) {
          if (global.json) io.out(JSON.stringify({ found: false, key: command.key }));
          else {
            io.err(
              command.version
                ? `key not found at version ${command.version}: ${command.key}`
                : `key not found: ${command.key}`,
            );
          }
          return ExitCode.notFound;
        }
        print(fromUtf8(kv.value), { found: true, ...kvJson(kv) });
        return ExitCode.ok;
      }
      case "delete": {
        const r = await client.delete(command.key, { ifVersion: command.ifVersion });
        if (!r.deleted) {
          if (global.json) io.out(JSON.stringify({ deleted: false, version: r.version }));
          else io.err(`key not found: ${command.key}`);
          return ExitCode.notFound;
        }
        print(`OK (version: ${r.version})`, { deleted: true, version: r.version });
        return ExitCode.ok;
      }
      case "scan": {
        const r = await client.scanPage({
          prefix: command.prefix,
          start: command.start,
          end: command.end,
          limit: command.limit,
          version: command.version,
          keysOnly: command.keysOnly,
          consistency: global.consistency,
        });
        if (global.json) {
          io.out(JSON.stringify({ version: r.version, more: r.more, kvs: r.kvs.map(kvJson) }));
        } else {
          for (const kv of r.kvs) {
            io.out(
              command.keysOnly ? fromUtf8(kv.key) : `${fromUtf8(kv.key)}\t${fromUtf8(kv.value)}`,
            );
          }
          io.err(
            `(${r.kvs.length} key${r.kvs.length === 1 ? "" : "s"} at version ${r.version}${
              r.more ? "; more remain" : ""
            })`,
          );
        }
        return ExitCode.ok;
      }
      case "status": {
        const s = await client.status();
        const peers = s.members.filter((m) => m.id !== s.nodeId).map((m) => m.id);
        const health = s.members.filter((m) => m.id !== s.nodeId).map((m) =>
          `${m.id} ${m.health} (${
            m.health === "down" && m.lastHeardMsAgo === 0
              ? "never heard"
              : `heard ${formatAge(m.lastHeardMsAgo)} ago`
          }${m.rttMs > 0 ? `, rtt ${m.rttMs.toFixed(1)} ms` : ""})`
        );
        print(
          `Node: ${s.nodeId} | Role: ${s.role} | Term: ${s.term} | Leader: ${
            s.leaderId || "none"
          }\n` +
            `Committed: ${s.commitIndex} | Applied: ${s.appliedIndex} | Peers: [${
              peers.join(", ")
            }]` + (health.length > 0 ? `\nHealth: ${health.join(" | ")}` : ""),
          s,
        );
        return ExitCode.ok;
      }
      case "bench": {
        const tty = !global.json && Deno.stderr.isTerminal();
        const result = await runBench({
          endpoints: global.peers,
          operations: command.operations,
          durationSecs: command.durationSecs,
          concurrency: command.concurrency,
          inflight: command.inflight,
          connections: command.connections,
          valueSize: command.valueSize,
          readRatio: command.readRatio,
          keySpace: command.keySpace,
          warmupSecs: command.warmupSecs,
          consistency: global.consistency,
          timeoutMs: global.timeoutMs,
          onProgress: tty
            ? (done, rate) =>
              Deno.stderr.writeSync(new TextEncoder().encode(`\r${done} ops, ${rate} ops/s   `))
            : undefined,
        });
        if (tty) io.err("");
        print(formatBench(result), result);
        return Object.keys(result.errors).length > 0 ? ExitCode.failure : ExitCode.ok;
      }
      case "watch": {
        const ac = new AbortController();
        const stop = () => ac.abort();
        Deno.addSignalListener("SIGINT", stop);
        try {
          for await (
            const e of client.watch({
              key: command.key,
              prefix: command.prefix,
              startVersion: command.startVersion,
              prevKv: command.prevKv,
              signal: ac.signal,
              // With --timeout: exit 1 when no node serves the watch that long (at start or
              // after a drop). Without, keep trying, as etcdctl watch does.
              giveUpAfterMs: global.timeoutGivenMs,
            })
          ) {
            if (global.json) {
              io.out(
                JSON.stringify({
                  type: e.type,
                  ...kvJson(e.kv),
                  prev: e.prev ? kvJson(e.prev) : undefined,
                }),
              );
            } else if (e.type === "put") {
              io.out(`PUT ${fromUtf8(e.kv.key)} = ${fromUtf8(e.kv.value)} (version: ${e.version})`);
            } else {
              io.out(`DELETE ${fromUtf8(e.kv.key)} (version: ${e.version})`);
            }
          }
        } finally {
          Deno.removeSignalListener("SIGINT", stop);
        }
        return ExitCode.ok;
      }
      case "member-list": {
        const r = await client.memberList();
        if (global.json) io.out(JSON.stringify(r));
        else {
          for (const m of r.members) {
            io.out(`${m.id}\t${m.addr}\t${m.role}${m.id === r.leaderId ? "\tleader" : ""}`);
          }
        }
        return ExitCode.ok;
      }
      case "txn": {
        const r = await client.txn(command);
        const ran = r.succeeded ? command.success : command.failure;
        if (global.json) {
          io.out(JSON.stringify({
            succeeded: r.succeeded,
            revision: r.revision,
            responses: r.results.map((x) =>
              x.kind === "get"
                ? { get: x.kv ? { found: true, ...kvJson(x.kv) } : { found: false } }
                : x.kind === "put"
                ? { put: { version: x.version } }
                : { delete: { deleted: x.deleted, version: x.version } }
            ),
          }));
        } else {
          io.out(`${r.succeeded ? "SUCCEEDED" : "FAILED"} (revision: ${r.revision})`);
          r.results.forEach((x, i) => {
            const op = ran[i];
            const key = "get" in op ? op.get : "delete" in op ? op.delete : op.put;
            if (x.kind === "get") {
              io.out(x.kv ? fromUtf8(x.kv.value) : `key not found: ${String(key)}`);
            } else if (x.kind === "put") io.out(`OK (version: ${x.version})`);
            else io.out(x.deleted ? `OK (version: ${x.version})` : `not found: ${String(key)}`);
          });
        }
        return r.succeeded ? ExitCode.ok : ExitCode.notFound;
      }
      case "compact": {
        const v = await client.compact(command.version);
        print(`OK (compacted: ${v})`, { compactedVersion: v });
        return ExitCode.ok;
      }
      case "transfer-leader": {
        const leader = await client.transferLeader(command.nodeId);
        print(`OK (leader: ${leader})`, { leaderId: leader });
        return ExitCode.ok;
      }
      case "member-add":
      case "member-remove": {
        const r = command.name === "member-add"
          ? await client.memberAdd(command.nodeId, command.addr)
          : await client.memberRemove(command.nodeId);
        if (global.json) io.out(JSON.stringify(r));
        else {
          io.out(`OK (members: ${r.members.map((m) => `${m.id}:${m.role}`).join(", ")})`);
        }
        return ExitCode.ok;
      }
      case "locate": {
        // The ring over the current voters, as the cluster computes it. It is placement for
        // sharding across Raft groups; with the one group of today every member holds every
        // key, and the second line says so.
        const members = (await client.memberList()).members;
        const voters = members.filter((m) => m.role === "voter").map((m) => m.id);
        const router = new Router(new HashRing(voters));
        const p = router.locate(command.key);
        const holders = members.map((m) => m.id);
        print(
          `Key: ${command.key} | Position: ${p.position} | Owner: ${p.owner} | Replicas: [${
            p.replicas.join(", ")
          }]\nStored on: [${holders.join(", ")}] (one Raft group: every member holds every ` +
            "key; the ring's owner and replicas are the placement sharding would use)",
          {
            key: command.key,
            position: p.position,
            owner: p.owner,
            replicas: p.replicas,
            storedOn: holders,
          },
        );
        return ExitCode.ok;
      }
    }
  } catch (e) {
    if (isKVError(e)) {
      const err = e as KVError;
      if (global.json) io.out(JSON.stringify({ error: err.code, message: err.message }));
      else if (e instanceof UnreachableClusterError) {
        io.err(`rustkvd-cli: cannot reach the cluster: ${err.message}`);
      } else io.err(`rustkvd-cli: ${err.code}: ${err.message}`);
      return ExitCode.failure;
    }
    throw e;
  }
}

/** "850 ms", "4.2 s", "3 min": an age a person reads at a glance. */
function formatAge(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  return `${Math.round(ms / 60_000)} min`;
}
