/**
 * The KeyValue message (proto/kvstore.proto) in the shape proto-loader gives
 * it, both ways: the server's answers (Put, Delete, Scan, Watch, Txn) and the
 * client's reading of them share one translation.
 *
 * @module
 */

import { emptyBytes } from "../common/bytes.ts";
import type { KeyValue } from "../node/state_machine.ts";

// deno-lint-ignore no-explicit-any
type Msg = any;

/** A KeyValue message for `kv` (undefined for none); `keysOnly` leaves the value out. */
export function keyValueToWire(kv: KeyValue | undefined, keysOnly = false): Msg {
  if (!kv) return undefined;
  return {
    key: kv.key,
    value: keysOnly ? emptyBytes : kv.value,
    version: kv.version,
    expires_at_ms: kv.expiresAtMs,
  };
}

/** A KeyValue message as a KeyValue, its bytes copied out of the message buffer. */
export function keyValueFromWire(m: Msg): KeyValue {
  return {
    key: new Uint8Array(m.key),
    value: new Uint8Array(m.value),
    version: Number(m.version),
    expiresAtMs: Number(m.expires_at_ms ?? 0),
  };
}
