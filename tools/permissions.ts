/**
 * The Deno permissions (and the server's V8 settings) of each executable, in
 * one place: `deno task compile` bakes them into the binaries, and `deno task
 * cluster` and the end-to-end tests run the entry points with the same set,
 * so a test proves what the shipped binary may do (no `-A` anywhere).
 *
 * @module
 */

/** What rustkvd-server needs: its data dir, its ports, env (failpoints), hostname/cores. */
export const serverPermissions: readonly string[] = [
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-sys",
];

/**
 * V8 settings of rustkvd-server, passed wherever its permissions are (the
 * compiled binary, `deno task start` and `deno task cluster`, the tests).
 * Allocation-site pretenuring is off: V8 began allocating the objects of
 * several per-request sites (RESP argument lists, commands, queued
 * proposals) straight in the old generation, because many of them were
 * alive at a young collection (a pipeline's commands are); they then died
 * soon after, stayed until a full collection and kept everything they
 * pointed to alive as well. Measured, 3 nodes, redis-benchmark SET -P16
 * against the leader, two runs each: 67,926 and 73,244 -> 81,920 and
 * 86,296 SETs/s, leader CPU 10.8 and 10.4 -> 8.3 and 7.9 s per million,
 * leader scavenge pauses 4.3 -> 1.4 ms; gRPC writes unchanged.
 */
export const serverV8Flags: readonly string[] = ["--v8-flags=--no-allocation-site-pretenuring"];

/** What rustkvd-cli needs: no file writes. */
export const cliPermissions: readonly string[] = [
  "--allow-read",
  "--allow-net",
  "--allow-env",
  "--allow-sys",
];
