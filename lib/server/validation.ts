/**
 * Input validation for every client request, in one place. Each rule reads
 * its bound from limits.ts and each failure is an InvalidArgumentError whose
 * message names the limit, so a user can fix the request without reading our
 * source. Validation runs before anything is proposed: a rejected request
 * never changes state.
 *
 * @module
 */

import { InvalidArgumentError } from "../common/errors.ts";
import {
  defaultScanLimit,
  maxKeyBytes,
  maxRequestBytes,
  maxScanLimit,
  maxTtlSeconds,
  maxValueBytes,
  minTtlSeconds,
} from "../common/limits.ts";
import { compareBytes, emptyBytes } from "../common/bytes.ts";
import { nodeIdPattern, parseHostPort } from "./config.ts";
import { canonicalMemberAddr, isWildcardAddr } from "../common/host_port.ts";

/** Requires a non-empty key within maxKeyBytes. */
export function validateKey(key: Uint8Array | undefined, what = "key"): Uint8Array {
  if (!key || key.length === 0) throw new InvalidArgumentError(`${what} must not be empty`);
  if (key.length > maxKeyBytes) {
    throw new InvalidArgumentError(
      `${what} is ${key.length} bytes, over the limit of ${maxKeyBytes} bytes`,
    );
  }
  return key;
}

/** Requires a value within maxValueBytes (empty values are allowed). */
export function validateValue(value: Uint8Array | undefined): Uint8Array {
  const v = value ?? emptyBytes;
  if (v.length > maxValueBytes) {
    throw new InvalidArgumentError(
      `value is ${v.length} bytes, over the limit of ${maxValueBytes} bytes`,
    );
  }
  return v;
}

/** Requires key + value to fit one request. */
export function validateRequestSize(bytes: number): void {
  if (bytes > maxRequestBytes) {
    throw new InvalidArgumentError(
      `request is ${bytes} bytes, over the limit of ${maxRequestBytes} bytes`,
    );
  }
}

/** 0 = no TTL; otherwise within [minTtlSeconds, maxTtlSeconds]. */
export function validateTtlSecs(ttl: number | undefined): number {
  const t = ttl ?? 0;
  if (!Number.isSafeInteger(t) || t < 0) {
    throw new InvalidArgumentError(`ttl_secs must be a non-negative integer, got ${t}`);
  }
  if (t !== 0 && (t < minTtlSeconds || t > maxTtlSeconds)) {
    throw new InvalidArgumentError(
      `ttl_secs must be between ${minTtlSeconds} and ${maxTtlSeconds} seconds, got ${t}`,
    );
  }
  return t;
}

/** Version arguments are non-negative safe integers (0 = latest / unset). */
export function validateVersion(v: number | undefined, what = "version"): number {
  const n = v ?? 0;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new InvalidArgumentError(
      `${what} must be an integer from 0 to ${Number.MAX_SAFE_INTEGER}, got ${n}`,
    );
  }
  return n;
}

/** A scan limit: 0 means the default; otherwise 1..maxScanLimit. */
export function validateScanLimit(limit: number | undefined): number {
  const n = limit ?? 0;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new InvalidArgumentError(`limit must be between 1 and ${maxScanLimit}, got ${n}`);
  }
  if (n === 0) return defaultScanLimit;
  if (n > maxScanLimit) {
    throw new InvalidArgumentError(`limit must be between 1 and ${maxScanLimit}, got ${n}`);
  }
  return n;
}

/** A scan's key selection: a prefix, or a half-open range [start, end) with start < end. */
export type KeyRange = { prefix: Uint8Array } | { start: Uint8Array; end: Uint8Array | undefined };

/** Validates a prefix-or-range selection; an empty selection means every key. */
export function validateRange(prefix?: Uint8Array, start?: Uint8Array, end?: Uint8Array): KeyRange {
  const hasPrefix = (prefix?.length ?? 0) > 0;
  const hasRange = (start?.length ?? 0) > 0 || (end?.length ?? 0) > 0;
  if (hasPrefix && hasRange) {
    throw new InvalidArgumentError("give either a prefix or a start/end range, not both");
  }
  if (hasPrefix) {
    if (prefix!.length > maxKeyBytes) {
      throw new InvalidArgumentError(
        `prefix is ${prefix!.length} bytes, over the limit of ${maxKeyBytes} bytes`,
      );
    }
    return { prefix: prefix! };
  }
  const s = start ?? new Uint8Array();
  const e = end !== undefined && end.length > 0 ? end : undefined;
  // A bound is not a stored key: the next page after a key of the full length starts at
  // that key plus a zero byte.
  const maxBound = maxKeyBytes + 1;
  if (s.length > maxBound) {
    throw new InvalidArgumentError(
      `start is ${s.length} bytes, over the limit of ${maxBound} bytes for a range bound`,
    );
  }
  if (e && e.length > maxBound) {
    throw new InvalidArgumentError(
      `end is ${e.length} bytes, over the limit of ${maxBound} bytes for a range bound`,
    );
  }
  if (e && compareBytes(s, e) >= 0) {
    throw new InvalidArgumentError("range start must be before range end");
  }
  return { start: s, end: e };
}

/** A watch targets exactly one key or one prefix. */
export function validateWatchTarget(
  key?: Uint8Array,
  prefix?: Uint8Array,
): KeyRange | { key: Uint8Array } {
  const hasKey = (key?.length ?? 0) > 0;
  const hasPrefix = (prefix?.length ?? 0) > 0;
  if (hasKey === hasPrefix) {
    throw new InvalidArgumentError("a watch needs exactly one of key or prefix");
  }
  if (hasKey) return { key: validateKey(key) };
  return validateRange(prefix);
}

/** Request ids are optional, printable and short. */
export function validateRequestId(id: string | undefined): string {
  const s = id ?? "";
  if (s.length > 128) {
    throw new InvalidArgumentError(`request_id is ${s.length} characters, over the limit of 128`);
  }
  return s;
}

/** Requires a well-formed member id and HOST:PORT address (join and member add). */
export function validateMember(id: string | undefined, addr: string | undefined): {
  id: string;
  addr: string;
} {
  if (!id || !nodeIdPattern.test(id)) {
    throw new InvalidArgumentError(
      `member id: use 1-63 letters, digits, '.', '_' or '-', got ${JSON.stringify(id ?? "")}`,
    );
  }
  const hp = parseHostPort(addr ?? "", "member address");
  if (typeof hp !== "string") throw new InvalidArgumentError(hp.error);
  if (isWildcardAddr(hp)) {
    throw new InvalidArgumentError(
      `member address ${hp} is not an address peers can reach; give the member's host address`,
    );
  }
  return { id, addr: canonicalMemberAddr(hp) };
}
