/**
 * Per-connection state of a RESP client: its id and name (CLIENT), the
 * read consistency it chose (READONLY = serializable reads from this
 * replica, READWRITE = linearizable, the default), and its transaction
 * (MULTI's queue, WATCHed keys).
 *
 * @module
 */

import type { ReadConsistency } from "../node/kv_node.ts";
import type { QueuedCommand } from "./commands_multi.ts";

let nextClientId = 0;

/** One client connection's settings; lives as long as the connection. */
/** A WATCHed key: its version when watched (0: absent), and the revision it was read at. */
export interface WatchedKey {
  key: Uint8Array;
  version: number;
  revision: number;
}

export class Session {
  /** CLIENT ID: unique per node process, increasing. */
  readonly id = ++nextClientId;
  /** CLIENT SETNAME (empty = none). */
  name = "";
  /** READONLY / READWRITE. */
  consistency: ReadConsistency = "linearizable";
  /** When the last command arrived (monotonic ms), for CLIENT LIST's idle. */
  lastActiveMs: number;
  /** The last command's name, for CLIENT LIST's cmd. */
  lastCommand = "NULL";
  /** Commands queued since MULTI (undefined: not in a transaction). */
  multi: QueuedCommand[] | undefined;
  /** A command was refused while queued: EXEC will abort. */
  multiFailed = false;
  /** Bytes of the queued commands' arguments. */
  multiBytes = 0;
  /** WATCHed keys, by their bytes as a string. */
  readonly watched = new Map<string, WatchedKey>();

  /** `connectedAtMs`: monotonic ms, for CLIENT LIST's age. */
  constructor(readonly remoteAddr: string, readonly connectedAtMs = 0) {
    this.lastActiveMs = connectedAtMs;
  }
}
