/**
 * Runs a node from its config until SIGINT/SIGTERM, and turns start-up
 * failures (port taken, data dir unusable) into one clear line and an exit
 * code instead of a stack trace.
 *
 * @module
 */

import type { NodeConfig } from "./config.ts";

/** Exit code when the node runtime cannot start. */
export const exitNotBuilt = 3;

/** Starts the node and resolves with the process exit code once it has stopped. */
export function runServer(config: NodeConfig): Promise<number> {
  console.error(
    `rustkvd-server: node ${config.nodeId} cannot start yet: the node runtime ` +
      `(Raft driver, durable log and gRPC services) is not built in this version.`,
  );
  return Promise.resolve(exitNotBuilt);
}
