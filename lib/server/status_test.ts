import * as grpc from "@grpc/grpc-js";
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import {
  CompactedError,
  ConflictError,
  CorruptionError,
  InvalidArgumentError,
  KVError,
  NoQuorumError,
  NotLeaderError,
  TimeoutError,
} from "../common/errors.ts";
import { fromGrpcError, leaderHintKey, toGrpcError } from "./status.ts";

Deno.test("each KVError maps to the documented gRPC status and back", () => {
  const cases: Array<[Error, grpc.status, string]> = [
    [new NotLeaderError("node2", "127.0.0.1:7002"), grpc.status.FAILED_PRECONDITION, "NotLeader"],
    [new ConflictError(new Uint8Array(), 7), grpc.status.FAILED_PRECONDITION, "Conflict"],
    [new NoQuorumError(), grpc.status.UNAVAILABLE, "NoQuorum"],
    [new TimeoutError("slow"), grpc.status.DEADLINE_EXCEEDED, "Timeout"],
    [new CompactedError(3, 10), grpc.status.OUT_OF_RANGE, "Compacted"],
    [
      new InvalidArgumentError("key exceeds the 4096-byte limit"),
      grpc.status.INVALID_ARGUMENT,
      "InvalidArgument",
    ],
    [new CorruptionError("f", 1, "bad crc"), grpc.status.DATA_LOSS, "Corruption"],
  ];
  for (const [error, status, code] of cases) {
    const wire = toGrpcError(error);
    assertEquals(wire.code, status, code);
    const back = fromGrpcError(wire);
    assertEquals(back.code, code);
  }
});

Deno.test("NotLeader carries the leader hint in metadata; Conflict carries the current version", () => {
  const wire = toGrpcError(new NotLeaderError("node3", "127.0.0.1:7003"));
  assertEquals(wire.metadata?.get(leaderHintKey), ["node3@127.0.0.1:7003"]);
  const back = fromGrpcError(wire) as NotLeaderError;
  assertEquals([back.leaderId, back.leaderAddr], ["node3", "127.0.0.1:7003"]);
  const conflict = fromGrpcError(
    toGrpcError(new ConflictError(new Uint8Array(), 42)),
  ) as ConflictError;
  assertEquals(conflict.currentVersion, 42);
  const compacted = fromGrpcError(toGrpcError(new CompactedError(1, 99))) as CompactedError;
  assertEquals(compacted.compacted, 99);
});

Deno.test("unknown errors become INTERNAL; transport errors become retryable kinds", () => {
  assertEquals(toGrpcError(new Error("boom")).code, grpc.status.INTERNAL);
  assertEquals(
    fromGrpcError({ code: grpc.status.UNAVAILABLE, details: "conn refused" }).code,
    "NoQuorum",
  );
  assertEquals(
    fromGrpcError({ code: grpc.status.DEADLINE_EXCEEDED, details: "late" }).code,
    "Timeout",
  );
  assertTrue(
    fromGrpcError({ code: grpc.status.INVALID_ARGUMENT, details: "x" }) instanceof
      InvalidArgumentError,
  );
  // An untagged INTERNAL is a broken connection, not a server verdict: retryable.
  assertEquals(
    fromGrpcError({ code: grpc.status.INTERNAL, details: "RST_STREAM code 2" }).code,
    "NoQuorum",
  );
});

Deno.test("a Conflict that is not a version mismatch keeps the server's message", () => {
  const wire = toGrpcError(new KVError("Conflict", "another membership change is in progress"));
  const back = fromGrpcError(wire);
  assertEquals(back.code, "Conflict");
  assertEquals(back.message, "another membership change is in progress");
});
