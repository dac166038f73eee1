/**
 * Hand-written protobuf codecs for the hottest KVStore calls (Put and Get):
 * request decoders and response encoders producing and taking the same
 * shapes as the proto-loader serializers (field names as in the .proto,
 * uint64 as number, enums as names, absent optional fields undefined).
 * The generic path built two default byte buffers per request (about a
 * microsecond each in Deno) and converted every message to and from an
 * object; these read the wire format straight into the handler's object.
 *
 * Decoders follow proto3: fields may come in any order, a repeated scalar
 * keeps the last value, unknown fields are skipped by wire type, and a
 * known field with the wrong wire type or a truncated message raises an
 * error (answered like any message that does not parse).
 *
 * @module
 */

import { ByteWriter, emptyBytes, fromUtf8 } from "../common/bytes.ts";

const varintType = 0;
const fixed64Type = 1;
const lengthType = 2;
const fixed32Type = 5;

/** Reads protobuf wire data from one message body. */
class WireReader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  /** A varint as a number: exact below 2^53 (uint64 fields are numbers, as in proto-loader). */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new Error("truncated varint");
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
    throw new Error("varint longer than 10 bytes");
  }

  /** A length-delimited field's bytes (a view of the message body, as proto-loader returns). */
  bytes(): Uint8Array {
    const n = this.varint();
    if (n > this.buf.length - this.pos) throw new Error(`length ${n} past the end of the message`);
    const out = n === 0 ? emptyBytes : this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  skip(wireType: number): void {
    if (wireType === varintType) this.varint();
    else if (wireType === lengthType) this.bytes();
    else if (wireType === fixed64Type || wireType === fixed32Type) {
      const n = wireType === fixed64Type ? 8 : 4;
      if (n > this.buf.length - this.pos) throw new Error("truncated fixed-width field");
      this.pos += n;
    } else throw new Error(`unsupported wire type ${wireType}`);
  }
}

/** How a field's value is read: its wire type follows (length-delimited or varint). */
type FieldKind = "bytes" | "string" | "uint" | "bool" | { enumNames: string[] };

/** A message's known fields by number: the property each fills and how it is read. */
type FieldTable = Record<number, [property: string, kind: FieldKind]>;

function readValue(kind: FieldKind, r: WireReader): unknown {
  if (kind === "bytes") return r.bytes();
  if (kind === "string") return fromUtf8(r.bytes());
  const v = r.varint();
  if (kind === "uint") return v;
  if (kind === "bool") return v !== 0;
  return kind.enumNames[v] ?? v;
}

/**
 * Reads `body` into `m` by `fields`: unknown fields are skipped by wire type,
 * a known one with the wrong wire type is an error.
 */
function readFields<T extends object>(body: Uint8Array, fields: FieldTable, m: T): T {
  const r = new WireReader(body);
  while (!r.done) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (field === 0) throw new Error("field number 0");
    const spec = fields[field];
    if (spec === undefined) {
      r.skip(wireType);
      continue;
    }
    const want = spec[1] === "bytes" || spec[1] === "string" ? lengthType : varintType;
    if (wireType !== want) {
      throw new Error(`field ${field} has wire type ${wireType}, expected ${want}`);
    }
    (m as Record<string, unknown>)[spec[0]] = readValue(spec[1], r);
  }
  return m;
}

/** A PutRequest as the Put handler reads it. */
export interface PutRequestMessage {
  key: Uint8Array;
  value: Uint8Array;
  ttl_secs: number;
  prev_kv: boolean;
  if_version: number | undefined;
  request_id: string;
}

const putRequestFields: FieldTable = {
  1: ["key", "bytes"],
  2: ["value", "bytes"],
  3: ["ttl_secs", "uint"],
  4: ["prev_kv", "bool"],
  5: ["if_version", "uint"],
  6: ["request_id", "string"],
};

/**
 * A decoded PutRequest, with proto3's defaults. Decoded requests are class
 * instances, not object literals: V8 may decide to allocate a literal's
 * objects straight in the old generation once many of them outlive a young
 * collection (allocation-site pretenuring), and then every request's fields
 * stayed alive until a full collection.
 */
class PutRequest implements PutRequestMessage {
  key = emptyBytes;
  value = emptyBytes;
  ttl_secs = 0;
  prev_kv = false;
  if_version: number | undefined = undefined;
  request_id = "";
}

/** Decodes a PutRequest. */
export function decodePutRequest(body: Uint8Array): PutRequestMessage {
  return readFields(body, putRequestFields, new PutRequest());
}

/** A GetRequest as the Get handler reads it (consistency by enum name). */
export interface GetRequestMessage {
  key: Uint8Array;
  version: number;
  consistency: string | number;
}

const getRequestFields: FieldTable = {
  1: ["key", "bytes"],
  2: ["version", "uint"],
  3: ["consistency", { enumNames: ["LINEARIZABLE", "SERIALIZABLE"] }],
};

/** A decoded GetRequest, with proto3's defaults (a class: see PutRequest). */
class GetRequest implements GetRequestMessage {
  key = emptyBytes;
  version = 0;
  consistency: string | number = "LINEARIZABLE";
}

/** Decodes a GetRequest. */
export function decodeGetRequest(body: Uint8Array): GetRequestMessage {
  return readFields(body, getRequestFields, new GetRequest());
}

/** One encoder's buffer: encodings are copied into a gRPC frame at once (see GrpcRouter). */
const out = new ByteWriter(256);

function putTag(w: ByteWriter, field: number, wireType: number): void {
  w.putUvarint(field * 8 + wireType);
}

function putUint(w: ByteWriter, field: number, v: number | undefined): void {
  if (!v) return; // proto3: zero is the default, not written
  putTag(w, field, varintType);
  w.putUvarint(v);
}

function putBytes(w: ByteWriter, field: number, v: Uint8Array | undefined): void {
  if (!v || v.length === 0) return;
  putTag(w, field, lengthType);
  w.putLengthPrefixed(v);
}

function putBool(w: ByteWriter, field: number, v: boolean | undefined): void {
  if (!v) return;
  putTag(w, field, varintType);
  w.putU8(1);
}

/** A KeyValue message (fields 1 key, 2 value, 3 version, 4 expires_at_ms). */
interface KeyValueMessage {
  key: Uint8Array;
  value: Uint8Array;
  version: number;
  expires_at_ms: number;
}

/** Encodes a PutResponse (1 version, 2 prev, 3 has_prev); the bytes are valid until the next encode. */
export function encodePutResponse(
  m: { version: number; prev?: KeyValueMessage; has_prev: boolean },
): Uint8Array {
  const w = out;
  w.reset();
  putUint(w, 1, m.version);
  if (m.prev) {
    const kv = new ByteWriter(32 + m.prev.key.length + m.prev.value.length);
    putBytes(kv, 1, m.prev.key);
    putBytes(kv, 2, m.prev.value);
    putUint(kv, 3, m.prev.version);
    putUint(kv, 4, m.prev.expires_at_ms);
    putTag(w, 2, lengthType);
    w.putLengthPrefixed(kv.view());
  }
  putBool(w, 3, m.has_prev);
  return w.view();
}

/**
 * Encodes a GetResponse (1 found, 2 value, 3 version, 4 revision,
 * 5 expires_at_ms); the bytes are valid until the next encode.
 */
export function encodeGetResponse(
  m: {
    found: boolean;
    value: Uint8Array;
    version: number;
    revision: number;
    expires_at_ms: number;
  },
): Uint8Array {
  const w = out;
  w.reset();
  putBool(w, 1, m.found);
  putBytes(w, 2, m.value);
  putUint(w, 3, m.version);
  putUint(w, 4, m.revision);
  putUint(w, 5, m.expires_at_ms);
  return w.view();
}
