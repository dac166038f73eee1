/**
 * Key placement as the CLI (`rustkvd-cli locate KEY`) and NodeStatus present
 * it: which node owns a key and which nodes hold its replicas. A thin layer
 * over the HashRing so the ring stays a pure data structure and the wording
 * of placement lives in one place.
 *
 * @module
 */

import { fromUtf8, toHex } from "../common/bytes.ts";
import { type HashRing, type RingKey, ringPosition } from "./hash_ring.ts";

/** Where one key lives. */
export interface Placement {
  /** Ring position of the key (u32), so operators can correlate with `virtualNodes()`. */
  readonly position: number;
  /** The node that owns the key (first virtual node clockwise). */
  readonly owner: string;
  /** The other copies, in clockwise order: the next distinct nodes after the owner. */
  readonly replicas: readonly string[];
}

/** Raised when placement is asked of a ring with no nodes: a misconfiguration, not a bug. */
export class EmptyRingError extends Error {
  override name = "EmptyRingError";
  constructor() {
    super("the hash ring has no nodes: no key can be placed");
  }
}

/**
 * Maps keys to the nodes responsible for them. Holds the ring by reference,
 * so membership changes made on the ring are seen by the next lookup.
 */
export class Router {
  constructor(readonly ring: HashRing) {}

  /** The owner and replicas of `key`; throws EmptyRingError on an empty ring. */
  locate(key: RingKey): Placement {
    const position = ringPosition(key);
    const nodes = this.ring.preferenceListOfPosition(position);
    if (nodes.length === 0) throw new EmptyRingError();
    return { position, owner: nodes[0], replicas: nodes.slice(1) };
  }

  /** One line for `locate KEY` output and logs, e.g. `key "a" @ 0x1f2e3d4c -> owner node2, replicas node3, node1`. */
  describePlacement(key: RingKey): string {
    const p = this.locate(key);
    const replicas = p.replicas.length === 0 ? "none" : p.replicas.join(", ");
    return `key ${renderKey(key)} @ 0x${
      p.position.toString(16).padStart(8, "0")
    } -> owner ${p.owner}, replicas ${replicas}`;
  }

  /** Each node's ring share by node id (what NodeStatus's `ring_share` field carries). */
  ringShares(): Map<string, number> {
    return new Map(this.ring.describeOwnership().map((s) => [s.nodeId, s.share]));
  }
}

/** A key for humans: quoted text when it is printable UTF-8, else hex. */
function renderKey(key: RingKey): string {
  if (typeof key === "string") return JSON.stringify(key);
  const text = fromUtf8(key);
  // deno-lint-ignore no-control-regex
  const printable = !text.includes("\uFFFD") && !/[\x00-\x1f\x7f]/.test(text);
  return printable ? JSON.stringify(text) : `0x${toHex(key)}`;
}
