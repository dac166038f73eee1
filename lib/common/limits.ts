/**
 * Every bound in rustkvd, in one place. A limit that is not here does not exist:
 * queues, buffers, batches, inputs and deadlines are all bounded, and the
 * relations between bounds are asserted at load time so an edit that breaks
 * one fails immediately rather than in production.
 *
 * @module
 */

import { assert } from "./assert.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** Largest user key. Keys are indexed and compared often; etcd and TiKV use similar caps. */
export const maxKeyBytes = 4 * KiB;
/** Largest user value. Large blobs belong in an object store, not in a Raft log. */
export const maxValueBytes = 1 * MiB;
/** Largest single request on the wire (key + value + framing). */
export const maxRequestBytes = 1.5 * MiB;
/** Largest gRPC message we accept or send on the client API. */
export const maxGrpcMessageBytes = 4 * MiB;
/**
 * Key and value bytes one Scan answer carries at most; past it the page ends
 * early with `more` set. Without it a Scan of 1 MiB values with a large
 * limit read and encoded gigabytes in one go, and the leader stalled long
 * enough to lose its leadership (found by the fault suite's fuzzer).
 */
export const maxScanResponseBytes = 3 * MiB;
/** Default number of keys a Scan returns when the caller gives no limit. */
export const defaultScanLimit = 1_000;
/** Largest scan page; callers page through bigger ranges. */
export const maxScanLimit = 10_000;
/** Shortest TTL a write may carry. */
export const minTtlSeconds = 1;
/** Longest TTL a write may carry (10 years). */
export const maxTtlSeconds = 10 * 365 * 24 * 3600;

/** Storage: size at which the active memtable is rotated and flushed. */
export const defaultMemtableBytes = 64 * MiB;
/** Storage: target size of one SSTable data block. */
export const blockSizeBytes = 4 * KiB;
/** Storage: bloom filter bits per key (~1 % false positives with the optimal k). */
export const bloomBitsPerKey = 10;
/** Storage: L0 file count that triggers an L0 -> L1 compaction. */
export const l0CompactionTrigger = 4;
/** Storage: L0 file count at which writes are slowed down to let compaction catch up. */
export const l0StopWritesTrigger = 12;
/** Storage: number of levels (L0..L6). */
export const levelCount = 7;
/** Storage: target byte size of L1; each deeper level is `levelSizeMultiplier` times larger. */
export const l1TargetBytes = 64 * MiB;
/** Storage: growth factor between levels. */
export const levelSizeMultiplier = 10;
/** Storage: target size of one SSTable produced by compaction. */
export const targetFileBytes = 8 * MiB;
/** Storage: default byte budget of the block cache. */
export const defaultBlockCacheBytes = 64 * MiB;
/** Storage: most SSTable files held open at once. */
export const maxOpenTables = 512;
/** Storage: most records one WAL group commit writes with one fsync. */
export const maxGroupCommitRecords = 4_096;
/** Storage: most bytes one WAL group commit writes with one fsync. */
export const maxGroupCommitBytes = 8 * MiB;
/** Storage: largest single WAL record (a write batch). */
export const maxWalRecordBytes = 32 * MiB;

/** Raft: entries carried by one AppendEntries message at most. */
export const maxEntriesPerAppend = 4_096;
/** Raft: bytes carried by one AppendEntries message at most. */
export const maxAppendBytes = 4 * MiB;
/**
 * Raft: largest encoded command one entry may carry. Anything larger is
 * refused before it is proposed: once in the log, an entry that cannot be
 * sent in one AppendEntries (or applied as one WAL record) would stop
 * replication or every replica's apply for good. A batch of writes (at most
 * `maxBatchBytes` plus one bounded group) and any single request fit.
 */
export const maxEntryBytes = 3 * MiB;
/** Raft: AppendEntries messages in flight to one follower at most (pipelining window). */
export const maxInflightAppends = 256;
/** Raft: proposals waiting for the leader to accept them, per group. */
export const maxPendingProposals = 65_536;
/** Raft: ReadIndex requests waiting for confirmation, per group. */
export const maxPendingReads = 65_536;
/** Raft: bytes of one InstallSnapshot chunk. */
export const snapshotChunkBytes = 1 * MiB;
/**
 * Raft: how long either end of a snapshot transfer waits on the other
 * (connect, drain, an acknowledgement, the next frame) before giving it up:
 * a peer whose host died sends no reset. Generous, since the receiver's last
 * acknowledgement follows a flush of what it staged.
 */
export const snapshotIdleTimeoutMs = 30_000;
/**
 * Raft: bytes appended to the log since it was last cut after which a
 * snapshot compacts it, whatever the entry count: 10,000 entries of 1 MiB
 * values would otherwise be 10 GiB of log, held in memory too.
 */
export const raftLogCompactBytes = 32 * MiB;
/**
 * Raft: bytes appended to a log segment (beyond what it restated when it
 * was started) after which a new segment is started.
 */
export const raftSegmentBytes = 64 * MiB;
/**
 * Raft: zero-filled space kept ahead of the log's appends, so a durable
 * append writes data without growing the file (see WalWriter).
 */
export const raftLogPreallocateBytes = 1 * MiB;
/** Raft: entry bytes one Raft log record carries at most (a larger entry alone in one). */
export const raftRecordBytes = 8 * MiB;
/** Node: command bytes applied with one engine write at most (more entries: more writes). */
export const maxApplyBatchBytes = 8 * MiB;
/** Raft: default number of log entries between two compactions of the log. */
export const defaultSnapshotEntries = 10_000;
/**
 * Raft: applied entries a log compaction keeps at most (etcd's
 * SnapshotCatchUpEntries), and never more than half of `--snapshot-entries`:
 * a follower that is a little behind when the log is cut catches up from the
 * log instead of needing a whole snapshot.
 */
export const raftCatchUpEntries = 5_000;
/**
 * Raft: entry bytes the catch-up tail of a compacted log holds at most (large
 * values). The cut restates the tail in a new segment while saves wait, so
 * this bounds that pause (2 MiB: a few milliseconds of writing and syncing).
 */
export const raftCatchUpBytes = 2 * MiB;
/**
 * MVCC history kept by default: the leader compacts away versions older than
 * the newest this many revisions (etcd's revision-mode auto-compaction); 0 keeps all.
 */
export const defaultHistoryRevisions = 100_000;

/** Node: messages queued to one peer before new ones are dropped (Raft retries them). */
export const maxPeerQueueMessages = 8_192;
/** Watch: events buffered for one slow watcher before it is cancelled. */
export const maxWatchBufferEvents = 10_000;
/** Watch: bytes (keys, values, previous values) one watcher buffers before it is cut off. */
export const maxWatchBufferBytes = 64 * MiB;
/** Watch: bytes of history one watch may replay; an older start is refused. */
export const maxWatchReplayBytes = 64 * MiB;
/**
 * Idempotency: how long a request id is remembered for deduplication (by
 * leader timestamps). The bound is time, not a count: every write with an id
 * keeps a small record in the engine for this long (a busy node holds one
 * per write of the last 10 minutes, until the next history compaction
 * deletes the expired ones).
 */
export const requestIdRetentionMs = 10 * 60 * 1000;

/** Deadlines: default for a client call. */
export const defaultRequestTimeoutMs = 5_000;
/** Deadlines: longest a client may ask for. */
export const maxRequestTimeoutMs = 60_000;

/** Timing defaults, matching the seed: a 10 ms tick, 50 ms heartbeats, 150–300 ms elections. */
export const defaultTickMs = 10;
/** Heartbeat interval. */
export const defaultHeartbeatMs = 50;
/** Base election timeout; the actual one is drawn from [base, 2 x base). */
export const defaultElectionMs = 150;

// Relations that must hold between the bounds above.
assert(maxKeyBytes + maxValueBytes < maxRequestBytes, "a max key + max value must fit a request");
assert(maxRequestBytes < maxGrpcMessageBytes, "a request must fit a gRPC message");
assert(maxRequestBytes <= maxAppendBytes, "one max-size entry must fit one AppendEntries");
assert(
  maxRequestBytes <= maxEntryBytes && maxEntryBytes + 64 * KiB <= maxAppendBytes,
  "a request fits an entry, and an entry fits one AppendEntries with its framing",
);
assert(maxEntryBytes + 64 * KiB <= maxWalRecordBytes, "an entry fits one WAL record");
assert(raftLogCompactBytes < raftSegmentBytes, "the log is cut before a segment fills");
assert(
  raftRecordBytes + maxRequestBytes + KiB <= maxWalRecordBytes,
  "a full raft log record plus one more entry fits a record",
);
assert(
  maxApplyBatchBytes + maxRequestBytes * 2 <= maxWalRecordBytes,
  "one apply write stays a readable WAL record",
);
assert(maxRequestBytes <= maxWalRecordBytes, "one max-size write must fit one WAL record");
assert(maxGroupCommitBytes <= maxWalRecordBytes * 4, "group commit stays a few records large");
assert(defaultScanLimit <= maxScanLimit, "default scan limit within the cap");
assert(minTtlSeconds > 0 && minTtlSeconds < maxTtlSeconds, "TTL bounds are ordered");
assert(l0CompactionTrigger < l0StopWritesTrigger, "compaction starts before writes stop");
assert(blockSizeBytes < targetFileBytes, "a table holds many blocks");
assert(defaultHeartbeatMs % defaultTickMs === 0, "heartbeat is a whole number of ticks");
assert(defaultElectionMs % defaultTickMs === 0, "election timeout is a whole number of ticks");
assert(defaultElectionMs >= 3 * defaultHeartbeatMs, "an election timeout spans several heartbeats");
assert(defaultRequestTimeoutMs <= maxRequestTimeoutMs, "default deadline within the cap");

/** RESP: largest bulk string a client may send (a max key or value plus slack, like a request). */
export const maxRespBulkBytes = maxRequestBytes;
/** RESP: most arguments in one multibulk command (an MSET of 10,000 pairs fits). */
export const maxRespMultibulkArgs = 65_536;
/**
 * RESP: most bytes of all of one multibulk command's arguments, so a
 * connection buffers one bounded frame (an MGET of 2,000 keys of 4 KiB fits;
 * a write that large would break maxEntryBytes anyway).
 */
export const maxRespFrameBytes = 8 * MiB;
/** RESP: longest inline command or multibulk/bulk header line (Redis uses 64 KiB too). */
export const maxRespInlineBytes = 64 * KiB;
/** RESP: reply bytes buffered for one connection before they are flushed mid-batch. */
export const maxRespPendingReplyBytes = 1 * MiB;
/** RESP: open client connections per node; more are answered with an error and closed. */
export const maxRespConnections = 10_000;
/** RESP: SCAN cursors a node remembers (the least recently used go first). */
export const maxRespScanCursors = 100_000;
/** RESP: bytes of keys those cursors may hold together. */
export const maxRespScanCursorBytes = 32 * MiB;
/** RESP: most keys KEYS returns; larger key spaces must be walked with SCAN. */
export const maxRespKeysReply = 10_000;
/** RESP: most commands one MULTI ... EXEC transaction may queue. */
export const maxTxnCommands = 10_000;
/** RESP: most keys DBSIZE and INFO keyspace count before reporting a lower bound. */
export const maxRespCountedKeys = 1_000_000;

assert(maxValueBytes < maxRespBulkBytes, "a max value fits one RESP bulk string");
assert(maxRespKeysReply <= maxScanLimit * 10, "KEYS stays a few scan pages large");
/**
 * RESP: commands of one connection's pipeline run concurrently at most (reads, or blind writes).
 * Their replies are held until the run ends, so this times maxValueBytes bounds a connection's
 * buffered replies.
 */
export const maxRespConcurrentCommands = 128;

/**
 * Bytes (command words) of one pipelined run of writes that is proposed as
 * one group: half the proposal batcher's 1 MiB, so a group always fits one
 * batch whole (lib/node/proposal_batcher.ts).
 */
export const maxRespWriteRunBytes = 512 * 1024;
