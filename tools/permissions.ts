/**
 * The Deno permissions of each executable, in one place: `deno task compile`
 * bakes them into the binaries, and `deno task cluster` and the end-to-end
 * tests run the entry points with the same set, so a test proves what the
 * shipped binary may do (no `-A` anywhere).
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

/** What rustkvd-cli needs: no file writes. */
export const cliPermissions: readonly string[] = [
  "--allow-read",
  "--allow-net",
  "--allow-env",
  "--allow-sys",
];
