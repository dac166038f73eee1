/**
 * Cluster placement: the consistent-hash ring and the router built on it.
 * Membership itself (join, learners, removal) lives with the node runtime;
 * this module only answers "which nodes hold this key".
 *
 * @module
 */
export * from "./hash_ring.ts";
export * from "./router.ts";
