import { parseCliArgs } from "./lib/client/cli_args.ts";
import { runCli } from "./lib/client/cli.ts";
if (Deno.env.get("STL")) Error.stackTraceLimit = 0;
const parsed = parseCliArgs(Deno.args);
if (parsed.kind === "run") Deno.exit(await runCli(parsed.global, parsed.command));
