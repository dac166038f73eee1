/**
 * The leader's view of one follower (nextIndex/matchIndex of Figure 2) and how it
 * sends to it: Probe (one Append per round trip until the logs match), Replicate
 * (pipelined Appends in a bounded window), Snapshot (waiting for a snapshot).
 *
 * @module
 */

import { assert } from "../common/assert.ts";
import { Inflights } from "./inflights.ts";

/** How the leader currently sends to a follower. */
export type ProgressState = "probe" | "replicate" | "snapshot";

/** Replication progress of one peer. */
export class Progress {
  /** Highest index known to be replicated on the peer (matchIndex). */
  match = 0;
  /** Index of the next entry to send (nextIndex). */
  next: number;
  state: ProgressState = "probe";
  /** In Probe: an Append was sent and we wait for its answer before sending another. */
  probeSent = false;
  /** In Snapshot: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from since the last CheckQuorum round. */
  recentActive = false;
  /** Highest ReadIndex round the peer has acknowledged. */
  readAck = 0;
  /** Highest commit index sent to the peer (lazy commit broadcast). */
  sentCommit = 0;
  /**
   * Last index of an entry the peer relayed to us: it waits for that commit
   * to answer its client, so a lazy broadcast tells it at once.
   */
  relayedUpTo = 0;
  isLearner: boolean;
  readonly inflights: Inflights;

  constructor(next: number, isLearner: boolean, maxInflight: number, maxInflightBytes: number) {
    this.next = next;
    this.isLearner = isLearner;
    this.inflights = new Inflights(maxInflight, maxInflightBytes);
  }

  #resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  /** Back to one-at-a-time probing from just after the known match. */
  becomeProbe(): void {
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.#resetState("probe");
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.#resetState("probe");
      this.next = this.match + 1;
    }
  }

  /** Logs match: stream optimistically. */
  becomeReplicate(): void {
    this.#resetState("replicate");
    this.next = this.match + 1;
  }

  /** The peer needs the snapshot at `snapshotIndex`. */
  becomeSnapshot(snapshotIndex: number): void {
    this.#resetState("snapshot");
    this.pendingSnapshot = snapshotIndex;
  }

  /**
   * Records an Append carrying entries up to `lastIndex` (`bytes` of them): in
   * Replicate, next moves on optimistically; in Probe, we pause until an answer.
   */
  sentEntries(lastIndex: number, count: number, bytes: number): void {
    if (this.state === "replicate") {
      if (count > 0) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex, bytes);
      }
    } else if (this.state === "probe") {
      this.probeSent = true;
    } else {
      assert(false, "sentEntries in snapshot state");
    }
  }

  /** A successful AppendResponse for `index`: returns true when match moved. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /**
   * A rejected Append for `rejected` with the follower's hint: moves next back.
   * Returns false when the rejection is stale (an answer to an old Append).
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false; // stale
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false; // not the probe we sent
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  /** True when the leader should not send more Appends to this peer now. */
  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflights.full();
      case "snapshot":
        return true;
    }
  }

  /** One-line rendering for status output. */
  describe(): string {
    const extra = this.state === "snapshot" ? ` snap=${this.pendingSnapshot}` : "";
    return `${this.state} match=${this.match} next=${this.next}${extra}${
      this.isLearner ? " learner" : ""
    }`;
  }
}
