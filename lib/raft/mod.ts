/**
 * The Raft core: a pure state machine behind the Ready contract (see README.md),
 * its storage interface, the wire/disk codec and the describe renderings.
 *
 * @module
 */
export * from "./types.ts";
export * from "./config.ts";
export * from "./storage.ts";
export * from "./raft_node.ts";
export type { ProposeResult, RejectReason } from "./raft.ts";
export type { ProgressState } from "./progress.ts";
export * from "./codec.ts";
export * from "./describe.ts";
export { applyConfChangeTo, validateConfChange } from "./membership.ts";
