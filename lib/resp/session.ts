/**
 * Per-connection state of a RESP client: its id and name (CLIENT), and the
 * read consistency it chose (READONLY = serializable reads from this
 * replica, READWRITE = linearizable, the default).
 *
 * @module
 */

import type { ReadConsistency } from "../node/kv_node.ts";

let nextClientId = 0;

/** One client connection's settings; lives as long as the connection. */
export class Session {
  /** CLIENT ID: unique per node process, increasing. */
  readonly id = ++nextClientId;
  /** CLIENT SETNAME (empty = none). */
  name = "";
  /** READONLY / READWRITE. */
  consistency: ReadConsistency = "linearizable";

  constructor(readonly remoteAddr: string) {}
}
