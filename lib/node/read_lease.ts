/**
 * A leader's read lease. ReadIndex confirms leadership with a heartbeat
 * round per batch of reads; a lease lets the leader skip those rounds for a
 * while. Once a quorum has acknowledged a round asked for at time T, no
 * other leader can be elected before T plus about one election timeout: each
 * voter that acknowledged ignores (Pre)Votes for that long after hearing
 * from its leader, or after restarting (RaftConfig.leaseReads). Until then
 * the leader's commit index is as fresh as a round would make it.
 *
 * The lease is measured on the leader's monotonic clock from when the round
 * was asked for (before its heartbeats left), so delays in sending,
 * delivering or processing only shorten it. It holds only while the core's
 * `leaseEpoch` is the one the round was asked under: a change of term or
 * role, a leadership transfer (whose forced election ignores leases) or a
 * membership change ends it. Voters count their election timeout in ticks,
 * which the driver never lets run faster than 0.9 of a tick apart; the
 * duration leaves two ticks of margin below that (`leaseDurationMs`).
 *
 * Pure: time comes in as arguments.
 *
 * @module
 */

/** A heartbeat round asked for and not yet confirmed. */
interface AskedRound {
  round: number;
  askedAtMs: number;
  epoch: number;
}

/**
 * How long a lease lasts for a given election timeout: voters ignore votes
 * for `electionTicks` ticks at least 0.9 tick apart, the first of which may
 * come at once; two ticks are kept as margin. 0 (no lease) when the timeout
 * is too short to leave any.
 */
export function leaseDurationMs(electionTicks: number, tickMs: number): number {
  return Math.max(0, (electionTicks - 2) * tickMs * 0.9);
}

/**
 * What a node promises its leader, in milliseconds: after hearing from it, or
 * after restarting, it ignores (Pre)Votes for at least this long. Nodes
 * announce it to their peers (the peer channel's Hello), so a leader whose
 * settings differ from a voter's never holds a lease past that voter's
 * promise (see `leaseLimitMs`). A node without lease reads promises nothing
 * across a restart, so it announces 0, and a leader it votes for uses no
 * lease.
 */
export function voteQuietMs(electionTicks: number, tickMs: number, leaseReads: boolean): number {
  return leaseReads ? Math.max(0, Math.floor((electionTicks - 1) * tickMs * 0.9)) : 0;
}

/**
 * The longest lease a voter's announced quiet period allows a leader that
 * ticks every `tickMs`: one of the leader's ticks below it, the margin
 * `leaseDurationMs` keeps when both run the same settings.
 */
export function leaseLimitMs(peerQuietMs: number, tickMs: number): number {
  return Math.max(0, peerQuietMs - tickMs * 0.9);
}

/** The lease of one leader, fed with its ReadIndex rounds. */
export class ReadLease {
  /** Start of the lease (when its round was asked for), on the monotonic clock. */
  #startMs = Number.NEGATIVE_INFINITY;
  /** The core's leaseEpoch the lease was taken under. */
  #epoch = -1;
  #asked: AskedRound[] = [];
  /** A shorter bound set by what the voters promise (`leaseLimitMs`); Infinity: none. */
  #limitMs = Number.POSITIVE_INFINITY;
  /** The bound of the lease held: the least in force from its round's asking on. */
  #heldLimitMs = Number.POSITIVE_INFINITY;
  /** Recent changes of the bound, oldest first (the first may predate the window). */
  #limitChanges: Array<{ atMs: number; limitMs: number }> = [];

  constructor(readonly durationMs: number) {}

  /**
   * How long a lease lasts now: the configured duration, or less when a voter
   * promises less. A lower limit applies at once, also to a lease held; a
   * higher one only to rounds asked after it (their acknowledgements come
   * from the voter that promised it, not from its earlier run).
   */
  get effectiveMs(): number {
    return Math.min(this.durationMs, this.#limitMs);
  }

  /** Bounds the lease by what the voters promise from `nowMs` on (Infinity: no bound). */
  limitTo(ms: number, nowMs: number): void {
    this.#limitMs = ms;
    this.#heldLimitMs = Math.min(this.#heldLimitMs, ms);
    const changes = this.#limitChanges;
    changes.push({ atMs: nowMs, limitMs: ms });
    // Rounds older than a lease never confirm one: keep one change from before that as the
    // bound then in force.
    while (changes.length > 1 && changes[1].atMs < nowMs - 2 * this.durationMs) changes.shift();
  }

  /** The least bound in force at any time from `atMs` on. */
  #limitSince(atMs: number): number {
    let least = Number.POSITIVE_INFINITY;
    for (const c of this.#limitChanges) {
      if (c.atMs <= atMs) least = c.limitMs; // the bound in force when the round was asked
      else least = Math.min(least, c.limitMs);
    }
    return Math.min(least, this.#limitMs);
  }

  /** A round was asked for at `nowMs` while the core's lease epoch was `epoch`. */
  asked(round: number, nowMs: number, epoch: number): void {
    this.#asked.push({ round, askedAtMs: nowMs, epoch });
  }

  /**
   * A quorum confirmed `round`; `epoch` is the core's lease epoch now. The
   * lease runs from when the round was asked for, if nothing that ends
   * leases happened since.
   */
  confirmed(round: number, epoch: number): void {
    const asked = this.#asked;
    let i = 0;
    while (i < asked.length && asked[i].round <= round) {
      const a = asked[i++];
      if (a.round !== round || a.epoch !== epoch) continue;
      if (this.#epoch !== epoch || a.askedAtMs > this.#startMs) {
        this.#startMs = a.askedAtMs;
        this.#heldLimitMs = this.#limitSince(a.askedAtMs);
      }
      this.#epoch = epoch;
    }
    if (i > 0) asked.splice(0, i);
  }

  /** True when a read at `nowMs`, lease epoch `epoch`, may skip the heartbeat round. */
  holds(nowMs: number, epoch: number): boolean {
    return epoch === this.#epoch &&
      nowMs < this.#startMs + Math.min(this.effectiveMs, this.#heldLimitMs);
  }

  /**
   * True when a round should be asked for now to extend the lease: it has
   * less than half its duration left (or none) and no round that could
   * extend it is in flight. Rounds from an earlier epoch, or older than a
   * lease (lost), no longer count as in flight. Never, when no lease can be
   * had (a voter promises too little).
   */
  wantsRenewal(nowMs: number, epoch: number): boolean {
    const duration = this.effectiveMs;
    if (duration <= 0) return false;
    const asked = this.#asked;
    let stale = 0;
    while (
      stale < asked.length &&
      (asked[stale].epoch !== epoch || nowMs - asked[stale].askedAtMs >= duration)
    ) stale++;
    if (stale > 0) asked.splice(0, stale);
    if (asked.length > 0) return false;
    return !this.holds(nowMs + duration / 2, epoch);
  }
}
