/**
 * `rustkvd-server`: one node of a rustkvd cluster. A thin entry point: parse
 * flags, then hand the config to the node runtime.
 *
 * @module
 */

import { parseServerArgs, serverUsage } from "./lib/server/config.ts";
import { rustkvdVersion } from "./lib/common/version.ts";
import { runServer } from "./lib/server/main.ts";

if (import.meta.main) {
  const parsed = parseServerArgs(Deno.args);
  switch (parsed.kind) {
    case "help":
      console.log(serverUsage);
      break;
    case "version":
      console.log(`rustkvd-server ${rustkvdVersion}`);
      break;
    case "error":
      console.error(`rustkvd-server: ${parsed.message}\n\n${serverUsage}`);
      Deno.exit(2);
      break;
    case "run":
      Deno.exit(await runServer(parsed.config));
  }
}
