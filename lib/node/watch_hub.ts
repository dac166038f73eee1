/**
 * Watches: change events fanned out from the apply loop, in revision order,
 * to every watcher whose key or prefix matches.
 *
 * A watcher that starts from a past version is first replayed from MVCC
 * history, then continues live without a gap or a duplicate: it registers
 * for live events synchronously at revision R0 (everything at or below R0 is
 * already in the engine, since events are published after the apply batch is
 * written), replays history in [start, R0], then delivers live events above R0.
 *
 * Each watcher buffers at most maxWatchBufferEvents; one that falls further
 * behind is cancelled with a reason and the last version it was given, so a
 * client resumes from there — events are never skipped silently.
 *
 * @module
 */

import { IoTurns } from "../common/time_slice.ts";
import { compareBytes, equalBytes, keySuccessor, prefixEnd } from "../common/bytes.ts";
import { ClosedError, CompactedError, InvalidArgumentError, isKVError } from "../common/errors.ts";
import {
  maxWatchBufferBytes,
  maxWatchBufferEvents,
  maxWatchReplayBytes,
} from "../common/limits.ts";
import type { Engine } from "../storage/engine.ts";
import type { ChangeEvent, KeyValue } from "./state_machine.ts";
import { systemKeyByte } from "./state_machine.ts";

/** Most history events one replay may hold; start from a newer version for more. */
export const maxWatchReplayEvents = 100_000;

/** What a watcher selects. */
export type WatchTarget = { key: Uint8Array } | { start: Uint8Array; end: Uint8Array | undefined };

/** An event a watcher receives. */
export interface WatchEvent {
  type: "put" | "delete";
  kv: KeyValue;
  prev?: KeyValue;
}

/** The end of a watch. */
export interface WatchCancel {
  reason: string;
  /** The last version delivered: resume from lastVersion + 1. */
  lastVersion: number;
  compactedVersion?: number;
}

/** Turns a key or a prefix into a target. */
export function watchTarget(key?: Uint8Array, prefix?: Uint8Array): WatchTarget {
  if (key && key.length > 0) return { key };
  return {
    start: prefix ?? new Uint8Array(),
    end: prefix && prefix.length > 0 ? prefixEnd(prefix) : undefined,
  };
}

function matches(t: WatchTarget, key: Uint8Array): boolean {
  if (key.length > 0 && key[0] === systemKeyByte) return false;
  if ("key" in t) return equalBytes(t.key, key);
  if (t.start.length > 0 && compareBytes(key, t.start) < 0) return false;
  return t.end === undefined || compareBytes(key, t.end) < 0;
}

/** One open watch: an async iterator of events, ending with a cancel reason. */
export class Watcher implements AsyncIterableIterator<WatchEvent> {
  #queue: WatchEvent[] = [];
  #live: WatchEvent[] = [];
  #replaying = true;
  /** Bytes of the events held (see eventBytes). */
  #bytes = 0;
  /** Events of version lastVersion + 1 handed out so far (it is only partly delivered). */
  #partOfNext = 0;
  #wake: (() => void) | undefined;
  /** Set once the watch ended (by the hub, an error or the client). */
  cancel: WatchCancel | undefined;
  /**
   * The last version whose events were all handed out: a transaction's
   * events share one version, and a watch cut off between two of them must
   * be resumed at that version, not after it.
   */
  lastVersion: number;

  constructor(
    readonly hub: WatchHub,
    readonly target: WatchTarget,
    readonly prevKv: boolean,
    readonly startRevision: number,
  ) {
    this.lastVersion = startRevision;
  }

  /** Live events from the hub; held back while history is replayed. */
  offer(e: WatchEvent): void {
    // A watch opened while a batch was being applied starts after that point.
    if (this.cancel || e.kv.version <= this.startRevision) return;
    if (this.#replaying) this.#live.push(e);
    else this.#queue.push(e);
    this.#bytes += eventBytes(e);
    if (
      this.#queue.length + this.#live.length > maxWatchBufferEvents ||
      this.#bytes > maxWatchBufferBytes
    ) {
      this.end({
        reason: `the watcher fell more than ${maxWatchBufferEvents} events or ` +
          `${maxWatchBufferBytes} bytes behind; resume from version ${this.lastVersion + 1}` +
          (this.#partOfNext > 0
            ? ` (${this.#partOfNext} event(s) of that version were delivered already)`
            : ""),
        lastVersion: this.lastVersion,
      });
      return;
    }
    this.#wake?.();
  }

  /** History replay finished: queue it, then the live events held back. */
  replayed(history: WatchEvent[], uptoRevision: number): void {
    this.#queue.push(...history);
    for (const e of history) this.#bytes += eventBytes(e);
    for (const e of this.#live) {
      if (e.kv.version > uptoRevision) this.#queue.push(e);
      else this.#bytes -= eventBytes(e);
    }
    this.#live = [];
    this.#replaying = false;
    this.#wake?.();
  }

  /** Ends the watch at once; queued events are dropped (the cancel says where to resume). */
  end(cancel: WatchCancel): void {
    if (this.cancel) return;
    this.cancel = cancel;
    this.#queue = [];
    this.#live = [];
    this.#bytes = 0;
    this.hub.remove(this);
    this.#wake?.();
  }

  async next(): Promise<IteratorResult<WatchEvent>> {
    while (this.#queue.length === 0 && !this.cancel) {
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
    if (this.cancel) return { value: undefined, done: true };
    const e = this.#queue.shift()!;
    this.#bytes -= eventBytes(e);
    // Every event of one version is queued at once (a batch is published, a replay queued,
    // in one go), so the queue's head tells whether this version is complete.
    const v = e.kv.version;
    if (this.#queue.length > 0 && this.#queue[0].kv.version === v) {
      this.#partOfNext = this.lastVersion === v - 1 ? this.#partOfNext + 1 : 1;
      this.lastVersion = v - 1;
    } else {
      this.#partOfNext = 0;
      this.lastVersion = v;
    }
    return { value: e, done: false };
  }

  /** Events waiting to be taken (for backpressure checks and tests). */
  get buffered(): number {
    return this.#queue.length + this.#live.length;
  }

  return(): Promise<IteratorResult<WatchEvent>> {
    this.end({ reason: "closed by the client", lastVersion: this.lastVersion });
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<WatchEvent> {
    return this;
  }
}

/** All open watches of a node. */
export class WatchHub {
  #watchers = new Set<Watcher>();
  #shutDown = false;
  /** Open watches with prevKv (the state machine reads previous values only for them). */
  #prevWatchers = 0;

  constructor(
    readonly engine: () => Engine,
    readonly revision: () => number,
    /**
     * Runs its argument between applies (StateMachine.atRest): a batch being
     * applied when a prevKv watch opens may have skipped reading previous
     * values, so that watch takes the batch from history instead.
     */
    readonly atRest: (f: () => void) => void = (f) => f(),
  ) {}

  /** Number of open watches. */
  get size(): number {
    return this.#watchers.size;
  }

  /** True while some watch wants previous values with its events. */
  get wantsPrev(): boolean {
    return this.#prevWatchers > 0;
  }

  /**
   * Opens a watch. `startVersion` 0 = from now; otherwise events with
   * version >= startVersion are replayed first. Refused with CompactedError
   * below the compacted version (from it on, history is readable). A start
   * beyond this replica's revision waits for it, as in etcd: a client that
   * fails over to a replica still catching up (or freshly rejoined and
   * empty) resumes there instead of being refused.
   */
  watch(target: WatchTarget, opts: { startVersion?: number; prevKv?: boolean } = {}): Watcher {
    if (this.#shutDown) throw new ClosedError("this node (it is shutting down)");
    const now = this.revision();
    const start = opts.startVersion ?? 0;
    const engine = this.engine();
    // History from the compacted revision on is still readable (a client resuming at the
    // revision it last saw, when history was compacted exactly there, has missed nothing).
    if (start > 0 && start < engine.compactedVersion) {
      throw new CompactedError(start, engine.compactedVersion);
    }
    const w = new Watcher(this, target, opts.prevKv ?? false, start > 0 ? start - 1 : now);
    this.#watchers.add(w);
    if (!w.prevKv) {
      this.#begin(w, engine, start, now, now);
      return w;
    }
    this.#prevWatchers++;
    // Events of a batch under way (past `now`) may lack their previous values: once it is
    // applied, they come from history, and the same live ones are dropped (Watcher.replayed).
    this.atRest(() => {
      if (!w.cancel) this.#begin(w, this.engine(), start, now, this.revision());
    });
    return w;
  }

  /**
   * Replays history from `start` (0: from `now`, the revision the watch
   * opened at) up to `upto`, then lets the live events after it through.
   */
  #begin(w: Watcher, engine: Engine, start: number, now: number, upto: number): void {
    const from = start > 0 ? start : now + 1;
    if (from > upto) {
      w.replayed([], upto);
    } else if (start === 0 && from < engine.compactedVersion) {
      // A watch from now whose batch compacted its own history: that batch's events come
      // live as they were published (a put's prev may be missing), none is lost.
      w.replayed([], now);
    } else {
      this.#replay(w, engine, from, upto).then(
        (events) => w.replayed(events, upto),
        (e) => {
          const compacted = isKVError(e, "Compacted") ? (e as CompactedError).compacted : undefined;
          w.end({
            reason: `history replay failed: ${(e as Error).message}`,
            lastVersion: from - 1,
            compactedVersion: compacted,
          });
        },
      );
    }
  }

  async #replay(w: Watcher, engine: Engine, start: number, upto: number): Promise<WatchEvent[]> {
    const t = w.target;
    const range = "key" in t
      ? { start: t.key, end: keySuccessor(t.key) }
      : { start: t.start, end: t.end };
    const events: WatchEvent[] = [];
    // history() yields each key's versions newest first; keep what is in [start, upto].
    let perKey: WatchEvent[] = [];
    let lastKey: Uint8Array | undefined;
    const flushKey = () => {
      perKey.reverse();
      events.push(...perKey);
      perKey = [];
    };
    const turns = new IoTurns();
    let replayBytes = 0;
    for await (
      const h of engine.history({ start: range.start, end: range.end, afterVersion: start - 1 })
    ) {
      const turn = turns.due();
      if (turn !== undefined) await turn;
      if (h.version > upto || !matches(t, h.key)) continue;
      if (lastKey === undefined || !equalBytes(lastKey, h.key)) {
        flushKey();
        lastKey = h.key;
      }
      perKey.push({
        type: h.deleted ? "delete" : "put",
        kv: {
          key: h.key,
          value: h.deleted ? new Uint8Array() : h.value,
          version: h.version,
          expiresAtMs: h.expiresAtMs ?? 0,
        },
      });
      replayBytes += h.key.length + (h.deleted ? 0 : h.value.length);
      if (replayBytes > maxWatchReplayBytes) {
        throw new InvalidArgumentError(
          `more than ${maxWatchReplayBytes} bytes of history since version ${start}; ` +
            "start from a newer version",
        );
      }
      if (events.length + perKey.length > maxWatchReplayEvents) {
        throw new InvalidArgumentError(
          `more than ${maxWatchReplayEvents} events since version ${start}; start from a newer version`,
        );
      }
    }
    flushKey();
    events.sort((a, b) => a.kv.version - b.kv.version);
    if (w.prevKv) {
      const horizon = engine.compactedVersion;
      for (const e of events) {
        // The value before the first readable revision is gone for good: no prev to give.
        if (e.kv.version - 1 < horizon) continue;
        // A compaction that overtakes the replay throws here: the watch ends with the
        // compacted version rather than hand out events without the prev it asked for.
        const prev = await engine.get(e.kv.key, { atVersion: e.kv.version - 1, nowMs: 0 });
        if (prev) {
          e.prev = {
            key: e.kv.key,
            value: prev.value,
            version: prev.version,
            expiresAtMs: prev.expiresAtMs ?? 0,
          };
        }
      }
    }
    return events;
  }

  /** Called by the state machine after each applied batch. */
  publish(changes: ChangeEvent[]): void {
    if (this.#watchers.size === 0) return;
    for (const w of this.#watchers) {
      for (const c of changes) {
        if (!matches(w.target, c.kv.key)) continue;
        w.offer({ type: c.type, kv: c.kv, prev: w.prevKv ? c.prev : undefined });
      }
    }
  }

  /** Called by a watcher that ended. */
  remove(w: Watcher): void {
    if (this.#watchers.delete(w) && w.prevKv) this.#prevWatchers--;
  }

  /** Ends every watch (node shutdown or snapshot install). */
  closeAll(reason: string): void {
    for (const w of [...this.#watchers]) w.end({ reason, lastVersion: w.lastVersion });
  }

  /**
   * Ends every watch and refuses new ones: the node is stopping. A client
   * that reconnected to it at once would otherwise hold its shutdown up
   * again, and see its connection reset instead of a reason.
   */
  shutDown(reason: string): void {
    this.#shutDown = true;
    this.closeAll(reason);
  }
}

/** What one event holds in memory: its key, value and previous value. */
function eventBytes(e: WatchEvent): number {
  return e.kv.key.length + e.kv.value.length + (e.prev?.value.length ?? 0);
}
