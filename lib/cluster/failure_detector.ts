/**
 * Peer health from the age of the last traffic heard: pure arithmetic, so
 * every node, test and tool classifies a peer the same way. Nodes hear each
 * other through Raft traffic and, where Raft is silent (follower to
 * follower), through the keep-alive the node runtime sends every
 * `keepAliveIntervalMs`; a healthy peer is therefore heard from several times
 * per `suspectAfterMs`.
 *
 * @module
 */

/** How often a node makes sure every member hears from it. */
export const keepAliveIntervalMs = 250;
/** Silence after which a peer is suspect (four missed keep-alives). */
export const suspectAfterMs = 1_000;
/** Silence after which a peer is reported down: the failure threshold. */
export const downAfterMs = 3_000;

/** How a node sees a peer. Never renumber the strings: the API reports them. */
export type PeerHealth = "healthy" | "suspect" | "down";

/** Classifies a peer last heard `silentMs` ago (undefined: never heard since start). */
export function classifyPeer(silentMs: number | undefined): PeerHealth {
  if (silentMs === undefined || silentMs >= downAfterMs) return "down";
  return silentMs >= suspectAfterMs ? "suspect" : "healthy";
}
