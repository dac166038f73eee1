/**
 * Binary encoding of the Raft core's records, for the transport and the durable
 * raft log. Every top-level record starts with a format version byte and a kind
 * byte; the exact layout is in lib/raft/FORMAT.md. Decoding never trusts its
 * input: garbage raises DecodeError, never a half-built object.
 *
 * @module
 */

import { ByteReader, ByteWriter, DecodeError, fromUtf8 } from "../common/bytes.ts";
import { maxEntriesPerAppend } from "../common/limits.ts";
import {
  type ConfChange,
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  maxMessageType,
  type Message,
  type MessageType,
  type Snapshot,
} from "./types.ts";

/** Format version written by this code. Bump on any incompatible change. */
export const raftFormatVersion = 1;

/** Kind byte after the version. Stored and sent: never renumber. */
export enum RecordKind {
  Message = 1,
  Entry = 2,
  HardState = 3,
  Snapshot = 4,
  ConfChange = 5,
}

const maxNodeIdBytes = 255;
const maxMembers = 1024;
const confChangeTypes: ConfChange["type"][] = ["addVoter", "addLearner", "removeNode"];

function header(w: ByteWriter, kind: RecordKind): void {
  w.putU8(raftFormatVersion).putU8(kind);
}

function readHeader(r: ByteReader, kind: RecordKind): void {
  const at = r.offset;
  const v = r.u8();
  if (v !== raftFormatVersion) throw new DecodeError(`unknown raft format version ${v}`, at);
  const k = r.u8();
  if (k !== kind) throw new DecodeError(`expected record kind ${kind}, got ${k}`, at + 1);
}

/**
 * Writes a node id as a length-prefixed UTF-8 string (the same bytes as
 * ByteWriter.putString), with a fast path for ASCII ids: they are on every
 * message and TextEncoder costs more than the rest of a small message.
 */
function putId(w: ByteWriter, id: string): void {
  let ascii = id.length < 128;
  for (let i = 0; ascii && i < id.length; i++) if (id.charCodeAt(i) > 0x7f) ascii = false;
  if (!ascii) {
    w.putString(id);
    return;
  }
  w.putU8(id.length);
  for (let i = 0; i < id.length; i++) w.putU8(id.charCodeAt(i));
}

/** Reads what putId wrote (any UTF-8 string of at most maxNodeIdBytes bytes). */
function readId(r: ByteReader): string {
  const b = r.lengthPrefixed(maxNodeIdBytes);
  let s = "";
  for (let i = 0; i < b.length; i++) {
    if (b[i] > 0x7f) return fromUtf8(b);
    s += String.fromCharCode(b[i]);
  }
  return s;
}

function putConfState(w: ByteWriter, c: ConfState): void {
  w.putUvarint(c.voters.length);
  for (const id of c.voters) putId(w, id);
  w.putUvarint(c.learners.length);
  for (const id of c.learners) putId(w, id);
}

function readIds(r: ByteReader): string[] {
  const at = r.offset;
  const n = r.uvarint();
  if (n > maxMembers) throw new DecodeError(`member count ${n} exceeds ${maxMembers}`, at);
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(readId(r));
  return out;
}

function readConfState(r: ByteReader): ConfState {
  const voters = readIds(r);
  const learners = readIds(r);
  return { voters, learners };
}

function putSnapshot(w: ByteWriter, s: Snapshot): void {
  w.putUvarint(s.meta.index).putUvarint(s.meta.term);
  putConfState(w, s.meta.conf);
  w.putLengthPrefixed(s.data);
}

function readSnapshot(r: ByteReader): Snapshot {
  const index = r.uvarint();
  const term = r.uvarint();
  const conf = readConfState(r);
  const data = r.lengthPrefixed().slice();
  return { meta: { index, term, conf }, data };
}

function readEntryType(r: ByteReader): EntryType {
  const at = r.offset;
  const t = r.u8();
  if (t !== EntryType.Normal && t !== EntryType.ConfChange) {
    throw new DecodeError(`unknown entry type ${t}`, at);
  }
  return t;
}

/** Encodes a message (the transport's payload). */
export function encodeMessage(m: Message): Uint8Array {
  // Size the buffer once: big Appends would otherwise be copied ~log2(size) times.
  let size = 64 + (m.context?.length ?? 0) + (m.snapshot ? m.snapshot.data.length + 256 : 0);
  for (const e of m.entries) size += e.data.length + 24;
  const w = new ByteWriter(size);
  header(w, RecordKind.Message);
  w.putU8(m.type).putUvarint(m.groupId);
  putId(w, m.from);
  putId(w, m.to);
  w.putUvarint(m.term).putUvarint(m.logTerm).putUvarint(m.index).putUvarint(m.commit);
  w.putUvarint(m.rejectHint);
  const flags = (m.reject ? 1 : 0) | (m.snapshot ? 2 : 0) | (m.context ? 4 : 0);
  w.putU8(flags);
  w.putUvarint(m.entries.length);
  for (const e of m.entries) {
    w.putUvarint(e.index).putUvarint(e.term).putU8(e.type).putLengthPrefixed(e.data);
  }
  if (m.snapshot) putSnapshot(w, m.snapshot);
  if (m.context) w.putLengthPrefixed(m.context);
  // The writer is not reused: its bytes are the result, no copy (a message is framed, then dropped).
  return w.view();
}

/** Decodes a message; entries inherit the message's group id. Raises DecodeError. */
export function decodeMessage(bytes: Uint8Array): Message {
  const r = new ByteReader(bytes);
  readHeader(r, RecordKind.Message);
  const at = r.offset;
  const type = r.u8();
  if (type > maxMessageType) throw new DecodeError(`unknown message type ${type}`, at);
  const groupId = r.uvarint();
  const from = readId(r);
  const to = readId(r);
  const term = r.uvarint();
  const logTerm = r.uvarint();
  const index = r.uvarint();
  const commit = r.uvarint();
  const rejectHint = r.uvarint();
  const flagsAt = r.offset;
  const flags = r.u8();
  if (flags > 7) throw new DecodeError(`unknown message flags ${flags}`, flagsAt);
  const countAt = r.offset;
  const count = r.uvarint();
  if (count > maxEntriesPerAppend) {
    throw new DecodeError(`entry count ${count} exceeds ${maxEntriesPerAppend}`, countAt);
  }
  const entries: Entry[] = [];
  for (let i = 0; i < count; i++) {
    const eIndex = r.uvarint();
    const eTerm = r.uvarint();
    const eType = readEntryType(r);
    const data = r.lengthPrefixed().slice();
    entries.push({ index: eIndex, term: eTerm, type: eType, groupId, data });
  }
  const m: Message = {
    type: type as MessageType,
    groupId,
    from,
    to,
    term,
    logTerm,
    index,
    entries,
    commit,
    reject: (flags & 1) !== 0,
    rejectHint,
  };
  if (flags & 2) m.snapshot = readSnapshot(r);
  if (flags & 4) m.context = r.lengthPrefixed().slice();
  r.expectEnd("raft message");
  return m;
}

/** Encodes one log entry with its group id (the durable log's record). */
export function encodeEntry(e: Entry): Uint8Array {
  const w = new ByteWriter(16 + e.data.length);
  header(w, RecordKind.Entry);
  w.putUvarint(e.groupId).putUvarint(e.index).putUvarint(e.term).putU8(e.type);
  w.putLengthPrefixed(e.data);
  return w.view(); // copied into the log's write at once
}

/** Decodes one log entry. Raises DecodeError. */
export function decodeEntry(bytes: Uint8Array): Entry {
  const r = new ByteReader(bytes);
  readHeader(r, RecordKind.Entry);
  const groupId = r.uvarint();
  const index = r.uvarint();
  const term = r.uvarint();
  const type = readEntryType(r);
  const data = r.lengthPrefixed().slice();
  r.expectEnd("raft entry");
  return { index, term, type, groupId, data };
}

/** Encodes a hard state. */
export function encodeHardState(hs: HardState): Uint8Array {
  const w = new ByteWriter(32);
  header(w, RecordKind.HardState);
  w.putUvarint(hs.term);
  putId(w, hs.vote);
  w.putUvarint(hs.commit);
  return w.finish();
}

/** Decodes a hard state. Raises DecodeError. */
export function decodeHardState(bytes: Uint8Array): HardState {
  const r = new ByteReader(bytes);
  readHeader(r, RecordKind.HardState);
  const term = r.uvarint();
  const vote = readId(r);
  const commit = r.uvarint();
  r.expectEnd("raft hard state");
  return { term, vote, commit };
}

/** Encodes a snapshot (metadata and data). */
export function encodeSnapshot(s: Snapshot): Uint8Array {
  const w = new ByteWriter(64 + s.data.length);
  header(w, RecordKind.Snapshot);
  putSnapshot(w, s);
  return w.finish();
}

/** Decodes a snapshot. Raises DecodeError. */
export function decodeSnapshot(bytes: Uint8Array): Snapshot {
  const r = new ByteReader(bytes);
  readHeader(r, RecordKind.Snapshot);
  const s = readSnapshot(r);
  r.expectEnd("raft snapshot");
  return s;
}

/** Encodes a membership change (the data of a ConfChange entry). */
export function encodeConfChange(c: ConfChange): Uint8Array {
  const w = new ByteWriter(32);
  header(w, RecordKind.ConfChange);
  w.putU8(confChangeTypes.indexOf(c.type));
  putId(w, c.nodeId);
  w.putU8(c.context ? 1 : 0);
  if (c.context) w.putLengthPrefixed(c.context);
  return w.finish();
}

/** Decodes a membership change. Raises DecodeError. */
export function decodeConfChange(bytes: Uint8Array): ConfChange {
  const r = new ByteReader(bytes);
  readHeader(r, RecordKind.ConfChange);
  const at = r.offset;
  const t = r.u8();
  if (t >= confChangeTypes.length) throw new DecodeError(`unknown conf change type ${t}`, at);
  const nodeId = readId(r);
  const flagAt = r.offset;
  const flag = r.u8();
  if (flag > 1) throw new DecodeError(`unknown conf change flags ${flag}`, flagAt);
  const change: ConfChange = { type: confChangeTypes[t], nodeId };
  if (flag === 1) change.context = r.lengthPrefixed().slice();
  r.expectEnd("raft conf change");
  return change;
}
