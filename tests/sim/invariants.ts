/**
 * Safety invariants the simulator checks on every step (TESTING.md, layer 2):
 * election safety, log matching, leader completeness, committed entries never
 * lost or changed, commit never moving back across restarts, equal applied
 * index => equal state, and a linearizability sanity check on client reads.
 *
 * @module
 */

import { equalBytes } from "../../lib/common/bytes.ts";
import type { Entry } from "../../lib/raft/types.ts";

/** A broken invariant: the simulator stops and prints the seed. */
export class InvariantError extends Error {
  override name = "InvariantError";
}

function fail(msg: string): never {
  throw new InvariantError(msg);
}

/** Cluster-wide facts gathered from every replica, checked as they arrive. */
export class Checker {
  /** term -> the one leader of that term. */
  readonly leaders = new Map<number, string>();
  /** "index:term" -> (data, term of the previous entry) as first persisted anywhere. */
  readonly #entries = new Map<string, { data: Uint8Array; prevTerm: number | undefined }>();
  /** index -> the committed entry at that index (from any replica's apply). */
  readonly committed: ({ term: number; data: Uint8Array; commitTermBound: number } | undefined)[] =
    [];
  /** Highest term any replica has persisted so far. */
  maxTerm = 0;
  /** index -> state-machine hash after applying it. */
  readonly #stateHash: (number | undefined)[] = [];
  /** node -> highest commit index it ever persisted. */
  readonly #persistedCommit = new Map<string, number>();
  checks = 0;

  /** Election safety (§5.2): at most one leader per term. */
  leaderElected(id: string, term: number): void {
    this.checks++;
    const prev = this.leaders.get(term);
    if (prev !== undefined && prev !== id) fail(`two leaders in term ${term}: ${prev} and ${id}`);
    this.leaders.set(term, id);
  }

  /**
   * Log matching (§5.3): entries with the same index and term hold the same data
   * and follow an entry of the same term (so, inductively, identical prefixes).
   */
  entryPersisted(node: string, e: Entry, prevTerm: number | undefined): void {
    this.checks++;
    const key = `${e.index}:${e.term}`;
    const seen = this.#entries.get(key);
    if (!seen) {
      this.#entries.set(key, { data: e.data, prevTerm });
      return;
    }
    if (!equalBytes(seen.data, e.data)) {
      fail(`${node}: entry ${key} differs from another replica's`);
    }
    if (seen.prevTerm !== undefined && prevTerm !== undefined && seen.prevTerm !== prevTerm) {
      fail(`${node}: entry ${key} follows term ${prevTerm}, elsewhere term ${seen.prevTerm}`);
    }
  }

  /** Committed entries are never lost or changed; equal applied index => equal state. */
  entryApplied(node: string, e: Entry, stateHash: number): void {
    this.checks++;
    const c = this.committed[e.index];
    if (!c) {
      // The entry was committed in some term <= the highest term seen so far.
      this.committed[e.index] = { term: e.term, data: e.data, commitTermBound: this.maxTerm };
    } else if (c.term !== e.term || !equalBytes(c.data, e.data)) {
      fail(`${node}: applied ${e.term}/${e.index}, but ${c.term}/${e.index} was committed`);
    }
    this.stateAt(node, e.index, stateHash);
  }

  /** Equal applied index => equal state (also for snapshots). */
  stateAt(node: string, index: number, stateHash: number): void {
    const h = this.#stateHash[index];
    if (h === undefined) this.#stateHash[index] = stateHash;
    else if (h !== stateHash) {
      fail(`${node}: state at applied index ${index} differs from another replica's`);
    }
  }

  /** A snapshot covers committed entries only, with their terms. */
  snapshotInstalled(node: string, index: number, term: number): void {
    this.checks++;
    const c = this.committed[index];
    if (c && c.term !== term) {
      fail(`${node}: snapshot at ${term}/${index} contradicts committed ${c.term}/${index}`);
    }
  }

  /** The persisted commit index never moves back, also across restarts. */
  commitPersisted(node: string, commit: number, term: number): void {
    if (term > this.maxTerm) this.maxTerm = term;
    this.checks++;
    const prev = this.#persistedCommit.get(node) ?? 0;
    if (commit < prev) fail(`${node}: persisted commit moved back from ${prev} to ${commit}`);
    this.#persistedCommit.set(node, commit);
  }

  /** After a restart, the node starts from at least the commit it had persisted. */
  restarted(node: string, commit: number): void {
    this.checks++;
    const prev = this.#persistedCommit.get(node) ?? 0;
    if (commit < prev) fail(`${node}: restarted with commit ${commit} < persisted ${prev}`);
  }

  /**
   * Leader completeness (§5.4): the leader of term T holds every entry committed
   * in a term below T (from its first index on; earlier ones are in its snapshot).
   * An entry counts once we know it was committed before T: its commit term is at
   * most the highest term seen when it was first applied.
   */
  leaderComplete(
    node: string,
    term: number,
    firstIndex: number,
    termAt: (i: number) => number | undefined,
  ): void {
    this.checks++;
    for (let i = Math.max(1, firstIndex); i < this.committed.length; i++) {
      const c = this.committed[i];
      if (!c || c.commitTermBound >= term) continue;
      const t = termAt(i);
      if (t !== c.term) {
        fail(`${node}: new leader lacks committed entry ${c.term}/${i} (has term ${t})`);
      }
    }
  }

  /** Highest index any replica applied. */
  get maxCommitted(): number {
    return this.committed.length - 1;
  }
}
