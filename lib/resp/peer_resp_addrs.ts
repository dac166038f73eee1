/**
 * Where the other members serve RESP, for ROLE and INFO replication: Redis
 * clients that discover a deployment's topology (Lettuce's MasterReplica,
 * for one) connect to the replicas and master these name, so they must be
 * RESP addresses, not the gRPC/Raft ones membership records. Each member
 * reports its own in NodeStatus; this asks the others, at most once per
 * `maxAgeMs`, each call bounded by `timeoutMs`, and remembers the answers.
 *
 * @module
 */

import { KVClient } from "../client/kv_client.ts";
import type { KVNode } from "../node/kv_node.ts";

/** How old the answers may get before a ROLE asks again. */
const maxAgeMs = 5_000;
/** How long one round of NodeStatus calls may take. */
const timeoutMs = 1_000;

/** The other members' RESP addresses, as they last reported them. */
export class PeerRespAddrs {
  /** Member id -> RESP address ("" = that member serves none). */
  readonly #addrs = new Map<string, string>();
  #askedAtMs = Number.NEGATIVE_INFINITY;
  #asking: Promise<void> | undefined;
  #client: KVClient | undefined;
  /** The members the client was made for (sorted addresses). */
  #endpoints = "";
  #closed = false;

  constructor(readonly node: KVNode) {}

  /**
   * The addresses. The first call waits (at most timeoutMs) for the peers'
   * answers; later ones answer from what is known and, once it is older
   * than maxAgeMs, ask again in the background, so an unreachable peer
   * never holds up a ROLE. Members that did not answer keep their last
   * address, or have none.
   */
  async current(): Promise<ReadonlyMap<string, string>> {
    const clock = this.node.clock;
    if (!this.#closed && clock.nowMs() - this.#askedAtMs >= maxAgeMs && !this.#asking) {
      this.#asking = this.#ask().finally(() => {
        this.#askedAtMs = clock.nowMs();
        this.#asking = undefined;
      });
    }
    if (this.#askedAtMs === Number.NEGATIVE_INFINITY) await this.#asking;
    return this.#addrs;
  }

  async #ask(): Promise<void> {
    const self = this.node.config.nodeId;
    const others = [...this.node.replica.members.values()].filter((m) => m.id !== self);
    if (others.length === 0) return;
    // Membership changed: a new client, so removed members' connections are closed.
    const endpoints = others.map((m) => m.addr).sort().join(",");
    if (this.#client !== undefined && endpoints !== this.#endpoints) {
      this.#client.close();
      this.#client = undefined;
    }
    this.#endpoints = endpoints;
    this.#client ??= new KVClient({ endpoints: others.map((m) => m.addr), timeoutMs });
    const client = this.#client;
    for (const id of [...this.#addrs.keys()]) {
      if (!others.some((m) => m.id === id)) this.#addrs.delete(id);
    }
    await Promise.all(others.map(async (m) => {
      try {
        const st = await client.status({ endpoint: m.addr, timeoutMs });
        if (st.nodeId === m.id) this.#addrs.set(m.id, st.respAddr);
      } catch {
        // Unreachable for now: its last answer stands.
      }
    }));
  }

  /** Closes the client's connections. */
  close(): void {
    this.#closed = true;
    this.#client?.close();
  }
}
