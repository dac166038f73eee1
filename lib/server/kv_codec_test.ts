import type { ServiceDefinition } from "@grpc/proto-loader";
import { utf8 } from "../common/bytes.ts";
import { SeededRandom } from "../common/random.ts";
import { assertEquals, assertThrows } from "../common/test_helpers.ts";
import {
  decodeGetRequest,
  decodePutRequest,
  encodeGetResponse,
  encodePutResponse,
} from "./kv_codec.ts";
import { loadRustkvdDefinition } from "./proto.ts";

const kv = loadRustkvdDefinition()["rustkvd.KVStore"] as ServiceDefinition;

/** What the handlers read of a message, with byte fields as plain arrays for comparison. */
// deno-lint-ignore no-explicit-any
function plain(m: any, fields: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of fields) {
    const v = m[f];
    out[f] = v instanceof Uint8Array ? [...v] : v ?? undefined;
  }
  return out;
}

const putFields = ["key", "value", "ttl_secs", "prev_kv", "if_version", "request_id"];

Deno.test("kv codec: PutRequest decodes as proto-loader decodes it", () => {
  const rnd = new SeededRandom(41);
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => rnd.nextInt(256));
  const cases = [
    {},
    { key: utf8("k"), value: utf8("v") },
    { key: utf8("k"), value: new Uint8Array(0), if_version: 0 },
    { key: bytes(4096), value: bytes(70_000), ttl_secs: 315_360_000, prev_kv: true },
    { key: utf8("k"), if_version: 2 ** 40, request_id: "c0a8f3e1-77" },
    { key: utf8("ключ"), request_id: "ид-1", value: bytes(1) },
  ];
  for (const c of cases) {
    const wire = kv.Put.requestSerialize(c);
    assertEquals(
      plain(decodePutRequest(wire), putFields),
      plain(kv.Put.requestDeserialize(wire as Buffer), putFields),
      JSON.stringify(Object.keys(c)),
    );
  }
});

Deno.test("kv codec: unknown fields are skipped, bad wire data is refused", () => {
  const known = kv.Put.requestSerialize({ key: utf8("k"), value: utf8("v") });
  // Field 9 as a varint, field 10 as fixed64, field 11 as bytes, field 12 as fixed32.
  const unknown = Uint8Array.from([
    0x48,
    0x96,
    0x01,
    0x51,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    0x5a,
    2,
    0xaa,
    0xbb,
    0x65,
    1,
    2,
    3,
    4,
  ]);
  const m = decodePutRequest(Uint8Array.from([...unknown, ...known]));
  assertEquals([...m.key, ...m.value], [...utf8("kv")]);
  assertThrows(() => decodePutRequest(Uint8Array.from([0x0a, 5, 1, 2])), Error, "past the end");
  assertThrows(() => decodePutRequest(Uint8Array.from([0x08, 1])), Error, "wire type");
  assertThrows(() => decodePutRequest(Uint8Array.from([0x18, 0xff])), Error, "truncated");
  assertThrows(() => decodePutRequest(Uint8Array.from([0x00, 1])), Error, "field number 0");
  assertThrows(() => decodeGetRequest(Uint8Array.from([0x4b])), Error, "wire type 3");
});

Deno.test("kv codec: GetRequest decodes as proto-loader decodes it", () => {
  const fields = ["key", "version", "consistency"];
  for (
    const c of [
      {},
      { key: utf8("k"), consistency: "SERIALIZABLE" },
      { key: utf8("k"), version: 12345, consistency: "LINEARIZABLE" },
    ]
  ) {
    const wire = kv.Get.requestSerialize(c);
    assertEquals(
      plain(decodeGetRequest(wire), fields),
      plain(kv.Get.requestDeserialize(wire as Buffer), fields),
    );
  }
});

Deno.test("kv codec: responses decode with proto-loader to what was encoded", () => {
  const putCases = [
    { version: 0, prev: undefined, has_prev: false },
    { version: 7, prev: undefined, has_prev: false },
    {
      version: 2 ** 50,
      prev: { key: utf8("k"), value: utf8("old"), version: 6, expires_at_ms: 1_765_000_000_000 },
      has_prev: true,
    },
    {
      version: 9,
      prev: { key: utf8("k"), value: new Uint8Array(0), version: 8, expires_at_ms: 0 },
      has_prev: true,
    },
  ];
  for (const c of putCases) {
    // deno-lint-ignore no-explicit-any
    const got = kv.Put.responseDeserialize(Buffer.from(encodePutResponse(c))) as any;
    assertEquals(got.version, c.version);
    assertEquals(got.has_prev, c.has_prev);
    if (c.prev) {
      assertEquals(plain(got.prev, ["key", "value", "version", "expires_at_ms"]), {
        ...c.prev,
        key: [...c.prev.key],
        value: [...c.prev.value],
      });
    } else assertEquals(got.prev ?? undefined, undefined);
  }
  const getCases = [
    { found: false, value: new Uint8Array(0), version: 0, revision: 5, expires_at_ms: 0 },
    {
      found: true,
      value: new Uint8Array(1 << 20).fill(7),
      version: 3,
      revision: 9,
      expires_at_ms: 99,
    },
  ];
  for (const c of getCases) {
    const got = kv.Get.responseDeserialize(Buffer.from(encodeGetResponse(c)));
    assertEquals(plain(got, ["found", "value", "version", "revision", "expires_at_ms"]), {
      ...c,
      value: [...c.value],
    });
  }
});
