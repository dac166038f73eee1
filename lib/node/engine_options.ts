/**
 * How a node opens its state-machine engine.
 *
 * @module
 */

import { defaultMemtableBytes } from "../common/limits.ts";
import type { EngineOptions } from "../storage/options.ts";

/**
 * The memtable size of node `nodeId`: the default scaled by a factor in
 * [0.75, 1.25) taken from a hash of the id, so it stays the same across
 * restarts. Every node applies the same writes, so with one size all of
 * them rotate their memtables and flush at the same moment, and every
 * quorum is slowed at once; with sizes apart, flushes drift apart (two
 * nodes with close sizes meet only now and then). p99 of 64 x 4 gRPC writes
 * on one host, five paired runs: 19.3-21.5 ms with one size, 17.0-20.4
 * staggered.
 */
export function staggeredMemtableBytes(nodeId: string, base = defaultMemtableBytes): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < nodeId.length; i++) h = Math.imul(h ^ nodeId.charCodeAt(i), 0x01000193);
  // Ids that differ in their last character only (n1, n2, n3) must still land far apart.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  const unit = (h >>> 0) / 2 ** 32;
  return Math.round(base * (0.75 + 0.5 * unit));
}

/**
 * The engine options of a node's state machine. Its WAL buffers applied
 * batches (the group-commit buffer holds sync: false writes) in memory up
 * to 1 MiB instead of writing each: the Raft log is the durable copy, the
 * engine is synced before the log is cut, and after a crash the node
 * replays the log from the engine's recovered applied index. No
 * preallocated WAL space: nothing waits on its fsyncs, so zero-filling
 * ahead would only double its disk writes.
 */
export function stateMachineEngineOptions(nodeId: string): EngineOptions {
  return {
    rowCacheBytes: 32 << 20,
    walBufferBytes: 1 << 20,
    walPreallocateBytes: 0,
    memtableBytes: staggeredMemtableBytes(nodeId),
  };
}
