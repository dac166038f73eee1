/**
 * `rustkvd-cli`: the command-line client. A thin entry point: parse argv,
 * then run the command against the cluster.
 *
 * @module
 */

import { ExitCode, parseCliArgs } from "./lib/client/cli_args.ts";
import { rustkvdVersion } from "./lib/common/version.ts";
import { runCli } from "./lib/client/cli.ts";

if (import.meta.main) {
  const parsed = parseCliArgs(Deno.args);
  switch (parsed.kind) {
    case "help":
      console.log(parsed.text);
      break;
    case "version":
      console.log(`rustkvd-cli ${rustkvdVersion}`);
      break;
    case "error":
      console.error(`rustkvd-cli: ${parsed.message}\n\n${parsed.usage}`);
      Deno.exit(ExitCode.usage);
      break;
    case "run":
      Deno.exit(await runCli(parsed.global, parsed.command));
  }
}
