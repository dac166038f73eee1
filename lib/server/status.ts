/**
 * The one mapping between our KVError family and gRPC status codes, used by
 * the server (error -> status + metadata) and by the client (status ->
 * error). Keeping both directions here means a code cannot drift between
 * them.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import {
  ClosedError,
  CompactedError,
  ConflictError,
  CorruptionError,
  DiskFullError,
  FutureVersionError,
  InvalidArgumentError,
  KVError,
  type KVErrorCode,
  NoQuorumError,
  NotLeaderError,
  TimeoutError,
} from "../common/errors.ts";

/** Metadata key carrying the leader's id and address on NotLeader ("id@host:port"). */
export const leaderHintKey = "leader-hint";
/**
 * Trailer of a linearizable read a follower answered: the leader's address,
 * where the client's next ones are cheaper (the leader reads from its lease).
 */
export const leaderAddrKey = "rustkvd-leader";
/** Metadata key carrying our error code, so clients rebuild the exact error class. */
export const errorCodeKey = "rustkvd-error";
/** Metadata key carrying a version number (current version on Conflict, compacted on Compacted). */
export const errorVersionKey = "rustkvd-version";

const statusByCode: Record<KVErrorCode, grpc.status> = {
  NotLeader: grpc.status.FAILED_PRECONDITION,
  Conflict: grpc.status.FAILED_PRECONDITION,
  NoQuorum: grpc.status.UNAVAILABLE,
  Timeout: grpc.status.DEADLINE_EXCEEDED,
  Closed: grpc.status.UNAVAILABLE,
  Compacted: grpc.status.OUT_OF_RANGE,
  FutureVersion: grpc.status.OUT_OF_RANGE,
  InvalidArgument: grpc.status.INVALID_ARGUMENT,
  Corruption: grpc.status.DATA_LOSS,
  DiskFull: grpc.status.RESOURCE_EXHAUSTED,
  Io: grpc.status.INTERNAL,
  Internal: grpc.status.INTERNAL,
};

/** A grpc-js error object: what a handler passes to its callback or emits on a stream. */
export type GrpcServiceError = Partial<grpc.StatusObject> & Error;

/** Turns any thrown value into a gRPC error with our code and hints in metadata. */
export function toGrpcError(e: unknown): GrpcServiceError {
  const metadata = new grpc.Metadata();
  if (e instanceof KVError) {
    metadata.set(errorCodeKey, e.code);
    if (e instanceof NotLeaderError && e.leaderId) {
      metadata.set(leaderHintKey, `${e.leaderId}@${e.leaderAddr ?? ""}`);
    }
    if (e instanceof ConflictError) metadata.set(errorVersionKey, String(e.currentVersion));
    if (e instanceof CompactedError) metadata.set(errorVersionKey, String(e.compacted));
    if (e instanceof FutureVersionError) metadata.set(errorVersionKey, String(e.current));
    return Object.assign(new Error(e.message), {
      code: statusByCode[e.code],
      details: e.message,
      metadata,
    });
  }
  const message = e instanceof Error ? e.message : String(e);
  metadata.set(errorCodeKey, "Internal");
  return Object.assign(new Error(message), {
    code: grpc.status.INTERNAL,
    details: `internal error: ${message}`,
    metadata,
  });
}

/** Parses a "id@host:port" leader hint. */
export function parseLeaderHint(
  hint: string | undefined,
): { id: string; addr: string } | undefined {
  if (!hint) return undefined;
  const at = hint.indexOf("@");
  if (at <= 0) return undefined;
  return { id: hint.slice(0, at), addr: hint.slice(at + 1) };
}

function metadataString(metadata: grpc.Metadata | undefined, key: string): string | undefined {
  const v = metadata?.get(key)?.[0];
  return v === undefined ? undefined : String(v);
}

/**
 * Rebuilds the KVError a server raised from the gRPC error a client received.
 * Errors without our metadata (transport failures) become NoQuorum-like
 * Unavailable errors or Timeout, so callers can decide whether to retry.
 */
export function fromGrpcError(e: unknown): KVError {
  if (e instanceof KVError) return e;
  const err = e as Partial<grpc.ServiceError>;
  const details = err.details ?? err.message ?? String(e);
  const code = metadataString(err.metadata, errorCodeKey) as KVErrorCode | undefined;
  const version = Number(metadataString(err.metadata, errorVersionKey) ?? "0");
  switch (code) {
    case "NotLeader": {
      const hint = parseLeaderHint(metadataString(err.metadata, leaderHintKey));
      return new NotLeaderError(hint?.id, hint?.addr);
    }
    case "Conflict":
      // Keep the server's words: a version mismatch and a pending membership
      // change share this code.
      return Object.assign(new ConflictError(new Uint8Array(), version), { message: details });
    case "Compacted":
      return Object.assign(new CompactedError(0, version), { message: details });
    case "FutureVersion":
      return Object.assign(new FutureVersionError(0, version), { message: details });
    case "InvalidArgument":
      return new InvalidArgumentError(details);
    case "NoQuorum":
      return new NoQuorumError(details);
    case "Timeout":
      return new TimeoutError(details);
    case "Closed":
      return new ClosedError(details);
    case "DiskFull":
      return Object.assign(new DiskFullError(""), { message: details });
    case "Corruption":
      return Object.assign(new CorruptionError("", 0, details), { message: details });
    case "Io":
    case "Internal":
      return new KVError(code, details);
  }
  if (err.code === grpc.status.DEADLINE_EXCEEDED) {
    return new TimeoutError(`deadline exceeded: ${details}`);
  }
  if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.CANCELLED) {
    return new KVError("NoQuorum", `unavailable: ${details}`);
  }
  if (err.code === grpc.status.INVALID_ARGUMENT) return new InvalidArgumentError(details);
  // Our server tags every error it raises; an untagged one is the transport's
  // (a connection reset mid-call): the outcome is unknown, a retry is safe
  // for reads and for writes carrying a request id.
  return new KVError("NoQuorum", `connection lost: ${details}`);
}
