/**
 * The vocabulary of the Raft core: log entries, persistent state, messages and
 * the Ready batch handed to the driver. Everything here is plain data so the
 * codec, the describe renderings and the simulator can treat it uniformly.
 *
 * @module
 */

/** Kind of a log entry. Stored on disk and on the wire: never renumber. */
export enum EntryType {
  /** Client data; an empty Normal entry is the leader's no-op at the start of its term. */
  Normal = 0,
  /** An encoded ConfChange (one server added, promoted or removed). */
  ConfChange = 1,
}

/** One slot of the replicated log (§5.3). */
export interface Entry {
  /** Position in the log, starting at 1. */
  index: number;
  /** Term of the leader that created the entry. */
  term: number;
  /** Normal (client data or a no-op) or ConfChange. */
  type: EntryType;
  /** The Raft group the entry belongs to (one process may host many groups). */
  groupId: number;
  /** The payload, opaque to Raft (an encoded ConfChange for ConfChange entries). */
  data: Uint8Array;
}

/** The state that must be durable before a node speaks (§5.1, Figure 2). */
export interface HardState {
  /** currentTerm. */
  term: number;
  /** Candidate voted for in `term`; "" means none. */
  vote: string;
  /** Highest index known committed; persisted so it never moves back across restarts. */
  commit: number;
}

/** Cluster membership: voters form quorums, learners only receive the log. */
export interface ConfState {
  /** Members whose votes and acknowledgements form majorities. */
  voters: string[];
  /** Members that receive the log but never vote or count toward commit. */
  learners: string[];
}

/** What a snapshot replaces: the log up to `index` (whose term was `term`) and its config. */
export interface SnapshotMeta {
  /** Index of the last entry the snapshot covers. */
  index: number;
  /** Term of that entry. */
  term: number;
  /** Membership as of `index`. */
  conf: ConfState;
}

/**
 * A state-machine snapshot. In the node runtime `data` is a small descriptor and
 * the driver streams the real state in chunks out of band.
 */
export interface Snapshot {
  /** What the snapshot covers. */
  meta: SnapshotMeta;
  /** The state (or, in the node runtime, a descriptor of where to fetch it). */
  data: Uint8Array;
}

/** Message kinds. On the wire: never renumber. */
export enum MessageType {
  Append = 0,
  AppendResponse = 1,
  Vote = 2,
  VoteResponse = 3,
  PreVote = 4,
  PreVoteResponse = 5,
  Heartbeat = 6,
  HeartbeatResponse = 7,
  Snapshot = 8,
  ReadIndex = 9,
  ReadIndexResponse = 10,
  TimeoutNow = 11,
  TransferLeader = 12,
  Propose = 13,
}

/** The largest MessageType value (for decoders). */
export const maxMessageType: MessageType = MessageType.Propose;

/**
 * One message between peers. Fields follow etcd's compact layout; their meaning
 * depends on `type`:
 * - Append: `index`/`logTerm` = prevLogIndex/prevLogTerm, `entries`, `commit`.
 * - AppendResponse: `index` = last index matched; on `reject`, `rejectHint` is the
 *   follower's probe point and `logTerm` the term at it (fast backtracking).
 * - Vote/PreVote: `index`/`logTerm` = the candidate's last index and term.
 * - Heartbeat: `commit`, and `context` carrying the ReadIndex round (echoed back).
 * - ReadIndex: `context` (client's); ReadIndexResponse: `index` + `context`.
 */
export interface Message {
  /** What the message asks or answers. */
  type: MessageType;
  /** The Raft group it belongs to; a node ignores other groups' messages. */
  groupId: number;
  /** Sender's node id. */
  from: string;
  /** Recipient's node id. */
  to: string;
  /** Sender's term (the campaign term for Vote/PreVote); 0 for forwarded local requests. */
  term: number;
  /** Term of the entry at `index` (meaning depends on `type`, see above). */
  logTerm: number;
  /** A log index (meaning depends on `type`, see above). */
  index: number;
  /** Entries carried by an Append. */
  entries: Entry[];
  /** The sender's commit index (Append, Heartbeat). */
  commit: number;
  /** A negative answer (AppendResponse, VoteResponse, PreVoteResponse). */
  reject: boolean;
  /** On a rejected Append: where the follower's log may match. */
  rejectHint: number;
  /** The snapshot of a Snapshot message. */
  snapshot?: Snapshot;
  /** ReadIndex context, heartbeat round, transfer target or vote marker. */
  context?: Uint8Array;
}

/** A membership change: one server at a time (thesis §4.1). */
export interface ConfChange {
  /** addVoter adds or promotes; addLearner adds or demotes; removeNode removes. */
  type: "addVoter" | "addLearner" | "removeNode";
  /** The server concerned. */
  nodeId: string;
  /** Opaque to Raft; the node runtime puts the server's address here. */
  context?: Uint8Array;
}

/** A released ReadIndex read: serve it once the local applied index reaches `index`. */
export interface ReadState {
  /** The read index: the leader's commit index when the read was confirmed. */
  index: number;
  /** The context given to readIndex(), to match the answer to the request. */
  context: Uint8Array;
}

/** Node role, including the PreVote phase (thesis §9.6). */
export type RaftRole = "follower" | "candidate" | "precandidate" | "leader";

/** Volatile state the driver may want to observe (not persisted). */
export interface SoftState {
  /** This node's role. */
  role: RaftRole;
  /** Current leader; "" when unknown. */
  leaderId: string;
}

/**
 * One batch of work for the driver; see lib/raft/README.md for the exact order
 * (persist, send, apply, advance). `persistedMessages` is split from `messages`
 * so "send only after fsync" is a type-level fact, not a comment.
 */
export interface Ready {
  /** Present when role or leader changed since the last Ready. */
  softState?: SoftState;
  /** Present when term, vote or commit changed; persist it after `entries`. */
  hardState?: HardState;
  /** Entries to append durably (they may overwrite a conflicting suffix). */
  entries: Entry[];
  /** A snapshot to install before anything else in this Ready. */
  snapshot?: Snapshot;
  /** Committed entries to apply, in order, after this Ready is persisted. */
  committedEntries: Entry[];
  /** Messages that may be sent at once, in parallel with persisting. */
  messages: Message[];
  /** Messages to send ONLY after entries, hardState and snapshot are durable. */
  persistedMessages: Message[];
  /** ReadIndex reads released since the last Ready. */
  readStates: ReadState[];
  /** True when the writes of this Ready must be fsynced before the persisted messages go. */
  mustSync: boolean;
}

/** A HardState with nothing in it. */
export function emptyHardState(): HardState {
  return { term: 0, vote: "", commit: 0 };
}

/** True when both hard states hold the same values. */
export function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/** A fresh message with every field defaulted, so call sites name only what matters. */
export function newMessage(
  fields: Partial<Message> & Pick<Message, "type" | "from" | "to" | "groupId">,
): Message {
  return {
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    ...fields,
  };
}

/** A copy of a ConfState (never share membership arrays between owners). */
export function cloneConfState(c: ConfState): ConfState {
  return { voters: [...c.voters], learners: [...c.learners] };
}

/** Approximate in-memory and wire size of an entry, for byte caps. */
export function entrySize(e: Entry): number {
  return e.data.length + 24;
}
