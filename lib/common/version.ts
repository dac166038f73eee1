/**
 * The release version, printed by `--version` of both executables. A test
 * keeps it equal to the version in deno.json.
 *
 * @module
 */

/** rustkvd's version (semver). */
export const rustkvdVersion = "0.1.0";
