/**
 * Helpers for the node's tests: commands as a client write would carry them.
 *
 * @module
 */

import { utf8 } from "../common/bytes.ts";
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
