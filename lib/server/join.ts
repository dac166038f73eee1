/**
 * The joining side of membership: a node started with `--peers` and an
 * empty data dir asks the listed peers to add it. Any peer will do — a
 * follower answers NotLeader with the leader's address and the client
 * follows it. Peers that are not up yet are retried until a bounded
 * deadline, so the seed's three terminals may be started in quick
 * succession; a refusal (the id is taken under another address, the address
 * belongs to another member) ends the attempt at once with its reason.
 *
 * @module
 */

import { KVClient } from "../client/kv_client.ts";
import { isKVError, type KVError } from "../common/errors.ts";
import { StartupError } from "../node/kv_node.ts";
import type { JoinResult } from "../node/membership.ts";
import type { NodeConfig } from "./config.ts";
import type { PeerReport } from "../node/kv_node.ts";
import { loadRustkvdDefinition } from "./proto.ts";

/** How long a starting node keeps trying to reach its --peers. */
export const joinTimeoutMs = 60_000;
/** Pause between rounds of join attempts. */
const joinRetryMs = 500;
/** Deadline of one join call (it waits for the membership change to commit). */
const joinCallTimeoutMs = 5_000;

/** Joins the cluster reachable through `config.peers`; throws StartupError when refused or unreachable. */
export async function joinThroughPeers(
  config: NodeConfig,
  onRetry: (reason: string) => void = () => {},
): Promise<JoinResult> {
  // Held open for the life of the process, never closed: see KVClientOptions.neverIdle.
  const client = new KVClient({
    endpoints: config.peers,
    timeoutMs: joinCallTimeoutMs,
    neverIdle: true,
  });
  const deadline = Date.now() + joinTimeoutMs;
  let lastReason = "no attempt made";
  while (Date.now() < deadline) {
    try {
      const r = await client.join(config.nodeId, config.advertiseAddr);
      return { clusterId: r.clusterId, members: r.members };
    } catch (e) {
      if (isKVError(e) && (e as KVError).code === "InvalidArgument") {
        throw new StartupError(
          `the cluster refused to add ${config.nodeId}: ${(e as Error).message}`,
        );
      }
      lastReason = (e as Error).message;
      onRetry(lastReason);
    }
    await new Promise((r) => setTimeout(r, joinRetryMs));
  }
  throw new StartupError(
    `could not join through --peers ${config.peers.join(",")} within ${
      joinTimeoutMs / 1000
    } s: ${lastReason}`,
  );
}

/** How long a restarting node waits for a --peers answer before starting anyway. */
const peerCheckTimeoutMs = 3_000;

/**
 * The cluster id the nodes at `config.peers` report, or undefined when none
 * answers in time (a whole cluster restarting must not wait on itself).
 * Lets a node whose data dir belongs to another cluster refuse to start.
 */
export async function clusterIdOfPeers(config: NodeConfig): Promise<string | undefined> {
  loadRustkvdDefinition(); // as in statusOfPeers: not out of the call's time
  // Never closed, like the join client (KVClientOptions.neverIdle).
  const client = new KVClient({
    endpoints: config.peers,
    timeoutMs: peerCheckTimeoutMs,
    neverIdle: true,
  });
  try {
    return (await client.status()).clusterId || undefined;
  } catch {
    return undefined;
  }
}

/** How long a starting static member waits for each other member's status. */
const staticPeerCheckTimeoutMs = 3_000;

/**
 * The statuses of the nodes at `addrs` that answer in time, each asked once
 * and at the same time (a refused connection answers at once, so a cluster
 * whose members all start together is not held up).
 */
export async function statusOfPeers(addrs: string[]): Promise<PeerReport[]> {
  if (addrs.length === 0) return [];
  // Parsing the proto takes a while on a busy host: not out of the calls' time.
  loadRustkvdDefinition();
  // Never closed, like the join client (KVClientOptions.neverIdle).
  const client = new KVClient({
    endpoints: addrs,
    timeoutMs: staticPeerCheckTimeoutMs,
    neverIdle: true,
  });
  const answers = await Promise.all(
    addrs.map((endpoint) =>
      client.status({ endpoint, timeoutMs: staticPeerCheckTimeoutMs }).catch(() => undefined)
    ),
  );
  return answers.filter((a) => a !== undefined);
}
