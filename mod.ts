/**
 * rustkvd as a library: the shared error family, limits and seams. The
 * storage engine, the Raft core and the KV client are exported here as they
 * land.
 *
 * @module
 */
export * from "./lib/common/mod.ts";
export { rustkvdVersion } from "./lib/common/version.ts";
