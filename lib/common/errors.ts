/**
 * The one error family that crosses every layer (storage, raft, node, server,
 * client). Callers switch on `code`; the gRPC edge maps codes to statuses in
 * one place (lib/server/status.ts). "Not found" is a value, not an error.
 *
 * @module
 */

/** Stable error codes. Never renumber or rename: clients and logs match on them. */
export type KVErrorCode =
  | "NotLeader"
  | "NoQuorum"
  | "Timeout"
  | "Corruption"
  | "Compacted"
  | "FutureVersion"
  | "InvalidArgument"
  | "Conflict"
  | "Closed"
  | "Io"
  | "DiskFull"
  | "Internal";

/** Base class: every error we raise on purpose is a KVError with a code. */
export class KVError extends Error {
  override name = "KVError";
  constructor(readonly code: KVErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** A follower (or a deposed leader) got a request that only the leader can serve. */
export class NotLeaderError extends KVError {
  override name = "NotLeaderError";
  constructor(readonly leaderId: string | undefined, readonly leaderAddr: string | undefined) {
    super(
      "NotLeader",
      leaderId
        ? `not the leader; the leader is ${leaderId} at ${leaderAddr ?? "an unknown address"}`
        : "not the leader, and no leader is known yet",
    );
  }
}

/** The cluster cannot reach a majority, so the request cannot be committed or confirmed. */
export class NoQuorumError extends KVError {
  override name = "NoQuorumError";
  constructor(message = "no quorum: a majority of the cluster is unreachable") {
    super("NoQuorum", message);
  }
}

/** A deadline passed before the operation finished; its outcome may be unknown. */
export class TimeoutError extends KVError {
  override name = "TimeoutError";
  constructor(message: string) {
    super("Timeout", message);
  }
}

/** Stored bytes failed a checksum or a structural check. Names where, so an operator can look. */
export class CorruptionError extends KVError {
  override name = "CorruptionError";
  constructor(readonly file: string, readonly offset: number, readonly detail: string) {
    super("Corruption", `corruption in ${file} at byte offset ${offset}: ${detail}`);
  }
}

/** A read or watch asked for history that compaction has already dropped. */
export class CompactedError extends KVError {
  override name = "CompactedError";
  constructor(readonly requested: number, readonly compacted: number) {
    super(
      "Compacted",
      `version ${requested} has been compacted; the oldest readable version is ${compacted}`,
    );
  }
}

/** A read asked for a version newer than any this replica has applied. */
export class FutureVersionError extends KVError {
  override name = "FutureVersionError";
  constructor(readonly requested: number, readonly current: number) {
    super("FutureVersion", `version ${requested} is newer than the current version ${current}`);
  }
}

/** Bad input. The message names the limit or rule that was broken. */
export class InvalidArgumentError extends KVError {
  override name = "InvalidArgumentError";
  constructor(message: string) {
    super("InvalidArgument", message);
  }
}

/** A compare-and-set found another version than the one the caller expected. */
export class ConflictError extends KVError {
  override name = "ConflictError";
  constructor(readonly key: Uint8Array, readonly currentVersion: number) {
    super("Conflict", `version mismatch: the key's current version is ${currentVersion}`);
  }
}

/** The component was closed (or is closing) and takes no more work. */
export class ClosedError extends KVError {
  override name = "ClosedError";
  constructor(what: string) {
    super("Closed", `${what} is closed`);
  }
}

/**
 * The disk ran out of space while writing `file`. An engine keeps what it
 * had and refuses the write; a node stops (exit code 70: its Raft log or
 * state can no longer advance safely) and starts cleanly once space is
 * freed, while the other members go on without it.
 */
export class DiskFullError extends KVError {
  override name = "DiskFullError";
  constructor(readonly file: string, options?: ErrorOptions) {
    super("DiskFull", `no space left on device while writing ${file}`, options);
  }
}

/** Any other I/O failure, with the file it concerns. */
export class IoError extends KVError {
  override name = "IoError";
  constructor(readonly file: string, detail: string, options?: ErrorOptions) {
    super("Io", `I/O error on ${file}: ${detail}`, options);
  }
}

/** True when `e` is a KVError carrying `code`. */
export function isKVError(e: unknown, code?: KVErrorCode): e is KVError {
  return e instanceof KVError && (code === undefined || e.code === code);
}
