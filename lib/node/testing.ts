/**
 * Helpers for the node's tests: commands as a client write would carry them,
 * and a one-node config.
 *
 * @module
 */

import { utf8 } from "../common/bytes.ts";
import { type NodeConfig, parseServerArgs } from "../server/config.ts";
import { type BatchableCommand, CommandOp } from "./command.ts";

/** An unconditional Put of `key` = `value` stamped at 1,000 ms (no expiry). */
export function plainPut(key: string, value: string, requestId = ""): BatchableCommand {
  return {
    op: CommandOp.Put,
    timestampMs: 1_000,
    requestId,
    key: utf8(key),
    value: utf8(value),
    expiresAtMs: 0,
    ifVersion: undefined,
  };
}

/** The config of a one-node cluster on `dataDir` that logs nothing (in-process node tests). */
export function singleNodeConfig(dataDir: string): NodeConfig {
  const parsed = parseServerArgs([
    "--node-id",
    "n1",
    "--data-dir",
    dataDir,
    "--initial-cluster",
    "n1=127.0.0.1:1",
    "--log-level",
    "error",
  ]);
  if (parsed.kind !== "run") throw new Error(`unexpected parse result ${parsed.kind}`);
  return parsed.config;
}

/** Waits until `node` leads (a one-node cluster elects itself), for at most 5 s. */
export async function untilLeader(node: { replica: { isLeader: boolean } }): Promise<void> {
  for (let i = 0; i < 200 && !node.replica.isLeader; i++) {
    await new Promise((r) => setTimeout(r, 25));
  }
  if (!node.replica.isLeader) throw new Error("no leader within 5 s");
}

/** Runs `fn` with a fresh data dir path under a temp root, removed afterwards. */
export async function withTempDataDir(fn: (dataDir: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "rustkvd-node-test-" });
  try {
    await fn(`${root}/n1`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}
