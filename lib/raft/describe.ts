/**
 * One-line renderings of entries, messages and Ready batches, for logs and for
 * the expected output of scenario tests (so they must stay stable and terse).
 *
 * @module
 */

import { fromUtf8, toHex } from "../common/bytes.ts";
import { decodeConfChange } from "./codec.ts";
import {
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  MessageType,
  type Ready,
  type Snapshot,
} from "./types.ts";

const maxDataChars = 24;

/** Data as a quoted string when printable, else hex (both cut to a few dozen chars). */
export function describeData(data: Uint8Array): string {
  let printable = true;
  for (const b of data) {
    if (b < 0x20 || b > 0x7e) {
      printable = false;
      break;
    }
  }
  if (printable) {
    const s = fromUtf8(data.subarray(0, maxDataChars));
    return JSON.stringify(s) + (data.length > maxDataChars ? "…" : "");
  }
  const h = toHex(data.subarray(0, maxDataChars / 2));
  return `0x${h}${data.length > maxDataChars / 2 ? "…" : ""}`;
}

/** `term/index` followed by the payload: `2/7 "put a=1"`, `2/5 noop`, `3/9 conf addVoter n4`. */
export function describeEntry(e: Entry): string {
  const at = `${e.term}/${e.index}`;
  if (e.type === EntryType.ConfChange) {
    try {
      const c = decodeConfChange(e.data);
      return `${at} conf ${c.type} ${c.nodeId}`;
    } catch {
      return `${at} conf <undecodable ${describeData(e.data)}>`;
    }
  }
  if (e.data.length === 0) return `${at} noop`;
  return `${at} ${describeData(e.data)}`;
}

/** `voters=(n1 n2) learners=(n3)`. */
export function describeConf(c: ConfState): string {
  const l = c.learners.length > 0 ? ` learners=(${c.learners.join(" ")})` : "";
  return `voters=(${c.voters.join(" ")})${l}`;
}

/** `snap 2/10 voters=(…)` (term/index of the last entry it covers). */
export function describeSnapshot(s: Snapshot): string {
  return `snap ${s.meta.term}/${s.meta.index} ${describeConf(s.meta.conf)}`;
}

/** `t3 vote=n1 commit=7`. */
export function describeHardState(hs: HardState): string {
  return `t${hs.term} vote=${hs.vote || "-"} commit=${hs.commit}`;
}

/**
 * `n1->n2 Append t2 log=1/5 commit=4 [2/6 "x", 2/7 "y"]`; only the fields that
 * matter for the type are shown.
 */
export function describeMessage(m: Message): string {
  const parts = [`${m.from}->${m.to}`, MessageType[m.type] ?? `type${m.type}`, `t${m.term}`];
  switch (m.type) {
    case MessageType.Append:
      parts.push(`log=${m.logTerm}/${m.index}`, `commit=${m.commit}`);
      if (m.entries.length > 0) parts.push(describeEntries(m.entries));
      break;
    case MessageType.AppendResponse:
      parts.push(`index=${m.index}`);
      if (m.reject) parts.push(`reject hint=${m.logTerm}/${m.rejectHint}`);
      break;
    case MessageType.Vote:
    case MessageType.PreVote:
      parts.push(`last=${m.logTerm}/${m.index}`);
      break;
    case MessageType.VoteResponse:
    case MessageType.PreVoteResponse:
      parts.push(m.reject ? "reject" : "grant");
      break;
    case MessageType.Heartbeat:
      parts.push(`commit=${m.commit}`);
      break;
    case MessageType.ReadIndexResponse:
      parts.push(`index=${m.index}`);
      break;
    case MessageType.Snapshot:
      if (m.snapshot) parts.push(describeSnapshot(m.snapshot));
      break;
    default:
      break;
  }
  if (m.context && m.context.length > 0 && m.type !== MessageType.Snapshot) {
    parts.push(`ctx=${describeData(m.context)}`);
  }
  return parts.join(" ");
}

/** `[2/6 "x", 2/7 "y"]`, eliding the middle of long runs. */
export function describeEntries(ents: Entry[]): string {
  if (ents.length <= 6) return `[${ents.map(describeEntry).join(", ")}]`;
  const head = ents.slice(0, 3).map(describeEntry);
  const tail = ents.slice(-2).map(describeEntry);
  return `[${head.join(", ")}, …${ents.length - 5} more…, ${tail.join(", ")}]`;
}

/**
 * One line: `Ready soft=leader/n1 hs=(t2 vote=n1 commit=3) entries=[…] committed=[…]
 * msgs=[…] after-persist=[…] reads=[…] sync`. Empty parts are left out.
 */
export function describeReady(rd: Ready): string {
  return describeReadyLines(rd).join(" ");
}

/**
 * The parts of describeReady one per line (scenario tests print these so a diff
 * shows exactly which part changed).
 */
export function describeReadyLines(rd: Ready): string[] {
  const out: string[] = ["Ready" + (rd.mustSync ? " sync" : "")];
  if (rd.softState) out.push(`soft=${rd.softState.role}/${rd.softState.leaderId || "-"}`);
  if (rd.hardState) out.push(`hs=(${describeHardState(rd.hardState)})`);
  if (rd.snapshot) out.push(`snapshot=(${describeSnapshot(rd.snapshot)})`);
  if (rd.entries.length > 0) out.push(`entries=${describeEntries(rd.entries)}`);
  if (rd.committedEntries.length > 0) out.push(`committed=${describeEntries(rd.committedEntries)}`);
  if (rd.messages.length > 0) out.push(`msgs=[${rd.messages.map(describeMessage).join("; ")}]`);
  if (rd.persistedMessages.length > 0) {
    out.push(`after-persist=[${rd.persistedMessages.map(describeMessage).join("; ")}]`);
  }
  if (rd.readStates.length > 0) {
    out.push(
      `reads=[${rd.readStates.map((r) => `${r.index}:${describeData(r.context)}`).join(", ")}]`,
    );
  }
  return out;
}
