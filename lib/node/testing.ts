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
