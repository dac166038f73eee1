import { assertEquals, assertThrows } from "../common/test_helpers.ts";
import { InvalidArgumentError } from "../common/errors.ts";
import { utf8 } from "../common/bytes.ts";
import {
  validateKey,
  validateMember,
  validateRange,
  validateRequestId,
  validateScanLimit,
  validateTtlSecs,
  validateValue,
  validateVersion,
  validateWatchTarget,
} from "./validation.ts";

Deno.test("each bad input fails with a message naming the limit", () => {
  const table: Array<[() => unknown, string]> = [
    [() => validateKey(new Uint8Array()), "key must not be empty"],
    [() => validateKey(new Uint8Array(4097)), "over the limit of 4096 bytes"],
    [() => validateValue(new Uint8Array(1024 * 1024 + 1)), "over the limit of 1048576 bytes"],
    [() => validateTtlSecs(-1), "non-negative"],
    [() => validateTtlSecs(10 * 365 * 24 * 3600 + 1), "between 1 and 315360000 seconds"],
    [() => validateScanLimit(10_001), "between 1 and 10000"],
    [() => validateScanLimit(-5), "between 1 and 10000"],
    [() => validateVersion(-1), "from 0 to 9007199254740991"],
    [() => validateVersion(2 ** 60), "from 0 to 9007199254740991, got 1152921504606847000"],
    [() => validateRange(undefined, new Uint8Array(4098)), "limit of 4097 bytes for a range bound"],
    [() => validateRange(utf8("p"), utf8("a")), "not both"],
    [() => validateRange(undefined, utf8("b"), utf8("a")), "start must be before"],
    [() => validateWatchTarget(), "exactly one"],
    [() => validateWatchTarget(utf8("k"), utf8("p")), "exactly one"],
    [() => validateRequestId("x".repeat(129)), "limit of 128"],
  ];
  for (const [fn, message] of table) assertThrows(fn, InvalidArgumentError, message);
});

Deno.test("good input passes with defaults filled in", () => {
  assertEquals(validateKey(new Uint8Array(4096)).length, 4096);
  assertEquals(validateValue(undefined).length, 0);
  assertEquals(validateTtlSecs(0), 0);
  assertEquals(validateTtlSecs(60), 60);
  assertEquals(validateScanLimit(0), 1000);
  assertEquals(validateRange(utf8("user:")), { prefix: utf8("user:") });
  assertEquals(validateRange(undefined, utf8("a"), new Uint8Array()), {
    start: utf8("a"),
    end: undefined,
  });
  assertEquals(validateWatchTarget(utf8("k")), { key: utf8("k") });
});

Deno.test("validateMember: localhost is kept as 127.0.0.1 (what a node advertises); wildcards are refused", () => {
  assertEquals(validateMember("n4", "localhost:7004"), { id: "n4", addr: "127.0.0.1:7004" });
  assertEquals(validateMember("n4", "10.0.0.4:7004"), { id: "n4", addr: "10.0.0.4:7004" });
  for (const addr of ["0.0.0.0:7004", "[::]:7004"]) {
    assertThrows(
      () => validateMember("n4", addr),
      InvalidArgumentError,
      "not an address peers can reach",
    );
  }
});
