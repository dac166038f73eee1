/**
 * The Txn call's messages (proto/kvstore.proto: TxnRequest, TxnResponse) in
 * the shapes proto-loader gives them (field names as in the .proto, enums as
 * names, a oneof's name in its own field), translated to and from the node's
 * transaction types (lib/node/txn.ts). The server and the client both use it.
 *
 * @module
 */

import { emptyBytes } from "../common/bytes.ts";
import { InvalidArgumentError } from "../common/errors.ts";
import { keyValueFromWire, keyValueToWire } from "./key_value_wire.ts";
import type {
  CompareResult,
  CompareTarget,
  TxnCompare,
  TxnOp,
  TxnOpResult,
  TxnOutcome,
  TxnRequest,
} from "../node/txn.ts";

// deno-lint-ignore no-explicit-any
type Msg = any;

const targets: Record<string, CompareTarget> = { VERSION: "version", VALUE: "value" };
const results: Record<string, CompareResult> = {
  EQUAL: "equal",
  NOT_EQUAL: "notEqual",
  GREATER: "greater",
  LESS: "less",
};

function wireName<T extends string>(table: Record<string, T>, value: T): string {
  return Object.keys(table).find((name) => table[name] === value)!;
}

function compareFromWire(c: Msg): TxnCompare {
  const target = targets[c.target ?? "VERSION"];
  const result = results[c.result ?? "EQUAL"];
  if (target === undefined) throw new InvalidArgumentError(`unknown compare target ${c.target}`);
  if (result === undefined) throw new InvalidArgumentError(`unknown compare result ${c.result}`);
  return {
    key: c.key ?? emptyBytes,
    target,
    result,
    version: Number(c.version ?? 0),
    value: c.value ?? emptyBytes,
  };
}

function opFromWire(o: Msg, list: string): TxnOp {
  const which = o.op ?? (o.put ? "put" : o.delete ? "delete" : o.get ? "get" : undefined);
  const body = which === undefined ? undefined : o[which];
  if (body === undefined || body === null) {
    throw new InvalidArgumentError(`a ${list} operation must set one of put, delete or get`);
  }
  if ((which === "put" || which === "delete") && (body.request_id ?? "") !== "") {
    throw new InvalidArgumentError(
      `a transaction's ${which} takes no request_id: set it on the TxnRequest`,
    );
  }
  if ((which === "put" || which === "delete") && body.if_version != null) {
    throw new InvalidArgumentError(
      `a transaction's ${which} takes no if_version: compare the key's version instead`,
    );
  }
  switch (which) {
    case "put":
      return {
        kind: "put",
        key: body.key ?? emptyBytes,
        value: body.value ?? emptyBytes,
        ttlSecs: Number(body.ttl_secs ?? 0),
        prevKv: body.prev_kv ?? false,
      };
    case "delete":
      return { kind: "delete", key: body.key ?? emptyBytes, prevKv: body.prev_kv ?? false };
    case "get":
      if (
        Number(body.version ?? 0) !== 0 || (body.consistency ?? "LINEARIZABLE") !== "LINEARIZABLE"
      ) {
        throw new InvalidArgumentError(
          "a transaction's get reads at the transaction's revision: version and consistency " +
            "must be unset",
        );
      }
      return { kind: "get", key: body.key ?? emptyBytes };
    default:
      throw new InvalidArgumentError(`unknown transaction operation ${which}`);
  }
}

/** A TxnRequest message as the node's transaction; InvalidArgument when malformed. */
export function txnFromWire(r: Msg): TxnRequest {
  return {
    compares: (r.compare ?? []).map(compareFromWire),
    success: (r.success ?? []).map((o: Msg) => opFromWire(o, "success")),
    failure: (r.failure ?? []).map((o: Msg) => opFromWire(o, "failure")),
  };
}

/** A TxnRequest message for a transaction (the client's side). */
export function txnToWire(txn: TxnRequest, requestId: string): Msg {
  return {
    compare: txn.compares.map((c) => ({
      key: c.key,
      target: wireName(targets, c.target),
      result: wireName(results, c.result),
      version: c.version,
      value: c.value,
    })),
    success: txn.success.map(opToWire),
    failure: txn.failure.map(opToWire),
    request_id: requestId,
  };
}

function opToWire(op: TxnOp): Msg {
  switch (op.kind) {
    case "put":
      return {
        put: { key: op.key, value: op.value, ttl_secs: op.ttlSecs, prev_kv: op.prevKv },
      };
    case "delete":
      return { delete: { key: op.key, prev_kv: op.prevKv } };
    case "get":
      return { get: { key: op.key } };
  }
}

/** A TxnResponse message for a transaction's outcome (the server's side). */
export function outcomeToWire(o: TxnOutcome): Msg {
  return {
    succeeded: o.succeeded,
    revision: o.revision,
    responses: o.results.map((r) => {
      switch (r.kind) {
        case "put":
          return {
            put: {
              version: r.version,
              prev: keyValueToWire(r.prev),
              has_prev: r.prev !== undefined,
            },
          };
        case "delete":
          return {
            delete: {
              version: r.version,
              deleted: r.deleted,
              prev: keyValueToWire(r.prev),
              has_prev: r.prev !== undefined,
            },
          };
        case "get":
          return {
            get: {
              found: r.kv !== undefined,
              value: r.kv?.value ?? emptyBytes,
              version: r.kv?.version ?? 0,
              revision: r.revision,
              expires_at_ms: r.kv?.expiresAtMs ?? 0,
            },
          };
      }
    }),
  };
}

/**
 * A TxnResponse message as an outcome (the client's side). `keys` are the
 * keys of the operations that ran, in order: a get's answer does not repeat
 * its key.
 */
export function outcomeFromWire(m: Msg, keys: Uint8Array[]): TxnOutcome {
  const responses: Msg[] = m.responses ?? [];
  return {
    succeeded: m.succeeded ?? false,
    revision: Number(m.revision ?? 0),
    results: responses.map((r, i): TxnOpResult => {
      const which = r.response ?? (r.put ? "put" : r.delete ? "delete" : "get");
      const body = r[which];
      switch (which) {
        case "put":
          return {
            kind: "put",
            version: Number(body.version),
            prev: body.has_prev ? keyValueFromWire(body.prev) : undefined,
          };
        case "delete":
          return {
            kind: "delete",
            version: Number(body.version),
            deleted: body.deleted,
            prev: body.has_prev ? keyValueFromWire(body.prev) : undefined,
          };
        default:
          return {
            kind: "get",
            revision: Number(body.revision),
            kv: body.found
              ? {
                key: keys[i],
                value: new Uint8Array(body.value),
                version: Number(body.version),
                expiresAtMs: Number(body.expires_at_ms),
              }
              : undefined,
          };
      }
    }),
  };
}
