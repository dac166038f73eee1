/**
 * The consistent-hash ring that will place key partitions on nodes once the
 * cluster scales out past one Raft group (today it only reports placement and
 * ring shares). Every node and every process must compute the same placement
 * from the same membership, so positions come from SHA-256 — never from a
 * seeded or process-local hash — and ties are broken by node id.
 *
 * Layout: each physical node owns `virtualNodesPerNode` points on a 2^32
 * circle at SHA-256("nodeId#i")[0..4] (big-endian u32). A key hashes to a point
 * the same way; its owner is the first virtual node clockwise (position >= the
 * key's, wrapping past 2^32 - 1 to the start), and its replicas are the next
 * distinct physical nodes after the owner. Points live in a sorted typed array
 * so a lookup is one binary search, and each point's preference list (owner
 * plus successors) is precomputed whenever membership changes.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { utf8 } from "../common/bytes.ts";

/** Virtual nodes per physical node: enough points to keep load skew small at 3–10 nodes. */
export const defaultVirtualNodesPerNode = 150;

/** Copies of each key (owner included) the cluster aims for. */
export const defaultReplicationFactor = 3;

/** Size of the ring's position space: positions are u32, so 2^32. */
export const ringSpaceSize = 0x1_0000_0000;

/** A key as callers hold it: raw bytes, or a string taken as its UTF-8 bytes. */
export type RingKey = Uint8Array | string;

/**
 * The ring position of `key`: the first 4 bytes of SHA-256(key), big-endian.
 * Exported so the CLI, status pages and tests agree on one definition.
 */
export function ringPosition(key: RingKey): number {
  const bytes = typeof key === "string" ? utf8(key) : key;
  const digest = createHash("sha256").update(bytes).digest();
  return ((digest[0] << 24) | (digest[1] << 16) | (digest[2] << 8) | digest[3]) >>> 0;
}

/** The ring position of virtual node `index` of `nodeId` (the hash of "nodeId#index"). */
export function virtualNodePosition(nodeId: string, index: number): number {
  return ringPosition(`${nodeId}#${index}`);
}

/** Tuning knobs; the defaults are the documented cluster-wide values. */
export interface HashRingOptions {
  /** Points per physical node (default 150). Must match on every node. */
  virtualNodesPerNode?: number;
  /** Copies per key, owner included (default 3). Capped by the node count. */
  replicationFactor?: number;
}

/** One point on the ring, for inspection and debugging output. */
export interface VirtualNode {
  /** Position on the 2^32 circle. */
  readonly position: number;
  /** The physical node this point belongs to. */
  readonly nodeId: string;
  /** Which of the node's points this is (the i in "nodeId#i"). */
  readonly index: number;
}

/** One node's part of the ring, as `describeOwnership` reports it. */
export interface OwnershipShare {
  /** The physical node. */
  readonly nodeId: string;
  /** Positions it owns as primary, out of 2^32. */
  readonly positions: number;
  /** `positions / 2^32`: the expected fraction of keys it owns. */
  readonly share: number;
}

/**
 * A consistent-hash ring over physical node ids. Pure and synchronous:
 * membership changes rebuild the sorted point array (O(V log V) for V points),
 * lookups are a binary search plus a precomputed preference list.
 */
export class HashRing {
  /** Points each physical node places on the ring. */
  readonly virtualNodesPerNode: number;
  /** Copies per key (owner included) before capping by the node count. */
  readonly replicationFactor: number;

  #nodes = new Set<string>();
  /** Node ids in sorted order; `#pointNode` indexes into it. */
  #nodeIds: string[] = [];
  /** Sorted point positions. */
  #positions = new Uint32Array(0);
  /** For each point, the index into `#nodeIds` of its node. */
  #pointNode = new Uint32Array(0);
  /** For each point, the "nodeId#i" index of the point. */
  #pointIndex = new Uint32Array(0);
  /** For each point, the preference list: owner then distinct successors, as node indexes. */
  #preference: Uint32Array[] = [];
  /** Positions of each node's points, cached so rebuilds do not re-hash. */
  #pointCache = new Map<string, Uint32Array>();

  constructor(nodeIds: Iterable<string> = [], options: HashRingOptions = {}) {
    const vnodes = options.virtualNodesPerNode ?? defaultVirtualNodesPerNode;
    const rf = options.replicationFactor ?? defaultReplicationFactor;
    if (!Number.isSafeInteger(vnodes) || vnodes < 1) {
      throw new RangeError(`virtualNodesPerNode must be a positive integer, got ${vnodes}`);
    }
    if (!Number.isSafeInteger(rf) || rf < 1) {
      throw new RangeError(`replicationFactor must be a positive integer, got ${rf}`);
    }
    this.virtualNodesPerNode = vnodes;
    this.replicationFactor = rf;
    for (const id of nodeIds) this.#insert(id);
    this.#rebuild();
  }

  /** Number of physical nodes. */
  get size(): number {
    return this.#nodes.size;
  }

  /** The physical node ids, sorted. */
  get nodes(): readonly string[] {
    return [...this.#nodeIds];
  }

  /** True when `nodeId` is on the ring. */
  hasNode(nodeId: string): boolean {
    return this.#nodes.has(nodeId);
  }

  /** Puts a node's points on the ring; adding a present node is a caller bug and throws. */
  addNode(nodeId: string): void {
    this.#insert(nodeId);
    this.#rebuild();
  }

  /** Takes a node's points off the ring; removing an absent node throws. */
  removeNode(nodeId: string): void {
    if (!this.#nodes.delete(nodeId)) {
      throw new RangeError(`node ${JSON.stringify(nodeId)} is not on the ring`);
    }
    this.#pointCache.delete(nodeId);
    this.#rebuild();
  }

  /** The owner of `key`, or undefined when the ring is empty. */
  ownerOf(key: RingKey): string | undefined {
    return this.ownerOfPosition(ringPosition(key));
  }

  /**
   * The owner of ring position `position` (a u32). Lets bulk callers hash keys
   * once and look them up many times, e.g. before and after a membership change.
   */
  ownerOfPosition(position: number): string | undefined {
    if (this.#positions.length === 0) return undefined;
    return this.#nodeIds[this.#pointNode[this.#pointAt(position)]];
  }

  /**
   * The nodes that hold `key`: the owner first, then the next distinct
   * physical nodes clockwise, `min(count, size)` in all.
   */
  preferenceList(key: RingKey, count = this.replicationFactor): string[] {
    return this.preferenceListOfPosition(ringPosition(key), count);
  }

  /** `preferenceList` for an already-hashed position. */
  preferenceListOfPosition(position: number, count = this.replicationFactor): string[] {
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new RangeError(`count must be a non-negative integer, got ${count}`);
    }
    if (this.#positions.length === 0 || count === 0) return [];
    const point = this.#pointAt(position);
    const wanted = Math.min(count, this.#nodeIds.length);
    if (wanted <= this.#preference[point].length) {
      return Array.from(this.#preference[point].subarray(0, wanted), (n) => this.#nodeIds[n]);
    }
    return this.#walk(point, wanted).map((n) => this.#nodeIds[n]);
  }

  /**
   * Each node's share of the position space as primary owner, sorted by node
   * id. Shares sum to exactly 1 (for a non-empty ring); NodeStatus reports them.
   */
  describeOwnership(): OwnershipShare[] {
    const owned = new Array<number>(this.#nodeIds.length).fill(0);
    const n = this.#positions.length;
    for (let i = 0; i < n; i++) {
      // Point i owns (previous point, its position]; the first point also owns the wrap.
      const arc = i === 0
        ? ringSpaceSize - this.#positions[n - 1] + this.#positions[0]
        : this.#positions[i] - this.#positions[i - 1];
      owned[this.#pointNode[i]] += arc;
    }
    // With one point, the wrap arc above counted the whole circle as 2^32: correct.
    return this.#nodeIds.map((nodeId, i) => ({
      nodeId,
      positions: owned[i],
      share: owned[i] / ringSpaceSize,
    }));
  }

  /** All points in ring order (for debugging and for cross-process comparison in tests). */
  virtualNodes(): VirtualNode[] {
    return Array.from(this.#positions, (position, i) => ({
      position,
      nodeId: this.#nodeIds[this.#pointNode[i]],
      index: this.#pointIndex[i],
    }));
  }

  #insert(nodeId: string): void {
    if (typeof nodeId !== "string" || nodeId === "") {
      throw new RangeError("a node id must be a non-empty string");
    }
    if (this.#nodes.has(nodeId)) {
      throw new RangeError(`node ${JSON.stringify(nodeId)} is already on the ring`);
    }
    this.#nodes.add(nodeId);
    if (!this.#pointCache.has(nodeId)) {
      const points = new Uint32Array(this.virtualNodesPerNode);
      for (let i = 0; i < points.length; i++) points[i] = virtualNodePosition(nodeId, i);
      this.#pointCache.set(nodeId, points);
    }
  }

  /** Index of the first point at or after `position`, wrapping to 0. Ring must be non-empty. */
  #pointAt(position: number): number {
    const positions = this.#positions;
    let lo = 0;
    let hi = positions.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (positions[mid] < position) lo = mid + 1;
      else hi = mid;
    }
    return lo === positions.length ? 0 : lo;
  }

  /** Distinct node indexes clockwise from `point`, at most `wanted`. */
  #walk(point: number, wanted: number): number[] {
    const out: number[] = [];
    const n = this.#positions.length;
    for (let step = 0; step < n && out.length < wanted; step++) {
      const node = this.#pointNode[(point + step) % n];
      if (!out.includes(node)) out.push(node);
    }
    return out;
  }

  #rebuild(): void {
    this.#nodeIds = [...this.#nodes].sort(compareIds);
    const total = this.#nodeIds.length * this.virtualNodesPerNode;
    const order = new Array<number>(total);
    const posOf = new Uint32Array(total);
    const nodeOf = new Uint32Array(total);
    const indexOf = new Uint32Array(total);
    let k = 0;
    this.#nodeIds.forEach((id, nodeIndex) => {
      const points = this.#pointCache.get(id)!;
      for (let i = 0; i < points.length; i++, k++) {
        order[k] = k;
        posOf[k] = points[i];
        nodeOf[k] = nodeIndex;
        indexOf[k] = i;
      }
    });
    // Node indexes follow sorted ids, so (position, node index, point index) is
    // the documented deterministic order: ties go to the smaller node id.
    order.sort((a, b) => posOf[a] - posOf[b] || nodeOf[a] - nodeOf[b] || indexOf[a] - indexOf[b]);
    this.#positions = Uint32Array.from(order, (o) => posOf[o]);
    this.#pointNode = Uint32Array.from(order, (o) => nodeOf[o]);
    this.#pointIndex = Uint32Array.from(order, (o) => indexOf[o]);
    const listLength = Math.min(this.replicationFactor, this.#nodeIds.length);
    this.#preference = Array.from(
      { length: total },
      (_, point) => Uint32Array.from(this.#walk(point, listLength)),
    );
  }
}

/** Code-unit string order, the same in every JavaScript engine and locale. */
function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
