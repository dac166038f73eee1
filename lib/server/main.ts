/**
 * Runs a node from its config until SIGINT/SIGTERM, and turns start-up
 * failures (port taken, data dir unusable or someone else's) into one clear
 * line and an exit code instead of a stack trace.
 *
 * @module
 */

import type { NodeConfig } from "./config.ts";
import { KVNode, StartupError } from "../node/kv_node.ts";
import { Logger } from "../node/logger.ts";
import { startGrpcServer } from "./grpc_server.ts";
import { GrpcSnapshotChannel } from "./grpc_snapshot_channel.ts";
import { clusterIdOfPeers, joinThroughPeers, statusOfPeers } from "./join.ts";
import { isKVError } from "../common/errors.ts";
import { splitHostPort } from "../common/host_port.ts";
import { type RespServer, startRespServer } from "../resp/listener.ts";

/** Exit code when the node cannot start (bad data dir, port taken). */
export const exitStartupFailed = 1;
/** Exit code when the node stopped on an unrecoverable error. */
export const exitFatal = 70;

/** Starts the node and resolves with the process exit code once it has stopped. */
export async function runServer(config: NodeConfig): Promise<number> {
  const log = new Logger(config.nodeId, config.logLevel);
  let fatal: Error | undefined;
  let wake: () => void = () => {};
  const stopped = new Promise<void>((resolve) => (wake = resolve));

  // Both ports are tried before the data dir is touched: a joiner that could not listen would
  // otherwise become a member first, at an address some other process answers on.
  for (const [addr, flag] of [[config.listenAddr, "--addr"], [config.respAddr, "--resp-addr"]]) {
    const problem = addr ? cannotListen(addr) : undefined;
    if (problem) {
      console.error(`rustkvd-server: cannot listen on ${addr} (${flag}): ${problem}`);
      return exitStartupFailed;
    }
  }
  // A join can wait up to a minute for --peers: a signal meanwhile stops the process, saying so.
  const interruptedWhileStarting = (signal: "SIGINT" | "SIGTERM") => () => {
    console.error(`rustkvd-server: ${signal} while starting; stopped before serving`);
    Deno.exit(signal === "SIGINT" ? 130 : 143);
  };
  const startSignals = [
    ["SIGINT", interruptedWhileStarting("SIGINT")],
    ["SIGTERM", interruptedWhileStarting("SIGTERM")],
  ] as const;
  for (const [signal, handler] of startSignals) Deno.addSignalListener(signal, handler);
  let node: KVNode;
  try {
    node = await KVNode.start(config, {
      log,
      clusterIdOfPeers,
      statusOfPeers,
      ...(config.snapshotTransport === "grpc"
        ? {
          snapshotChannel: (addr: string, clusterId: string, selfId: string) =>
            new GrpcSnapshotChannel(addr, clusterId, selfId),
        }
        : {}),
      join: (c) => {
        log.info("joining the cluster through --peers", { peers: c.peers.join(",") });
        return joinThroughPeers(
          c,
          (reason) => log.info("waiting for --peers to accept us", { reason }),
        );
      },
      onFatal: (e) => {
        fatal = e;
        wake();
      },
    });
  } catch (e) {
    if (e instanceof StartupError || isKVError(e)) {
      console.error(`rustkvd-server: ${(e as Error).message}`);
      return exitStartupFailed;
    }
    throw e;
  } finally {
    for (const [signal, handler] of startSignals) Deno.removeSignalListener(signal, handler);
  }
  let grpcServer;
  try {
    grpcServer = await startGrpcServer(node, config.listenAddr, (reason) => {
      // Serving nobody, peers included: stop, so that a supervisor restarts the node.
      fatal = new Error(reason);
      wake();
    });
  } catch (e) {
    const message = (e as Error).message;
    const reason = /EADDRINUSE|address already in use/i.test(message)
      ? `port ${config.listenAddr} is already in use`
      : message;
    console.error(`rustkvd-server: cannot listen on ${config.listenAddr}: ${reason}`);
    await node.close();
    return exitStartupFailed;
  }
  let respServer: RespServer | undefined;
  if (config.respAddr) {
    try {
      respServer = startRespServer(node, config.respAddr);
    } catch (e) {
      console.error(
        `rustkvd-server: cannot listen on ${config.respAddr} (--resp-addr): ${
          (e as Error).message
        }`,
      );
      await grpcServer.close();
      await node.close();
      return exitStartupFailed;
    }
    log.info("serving RESP", { addr: config.respAddr, port: respServer.port });
    // Like the "listening on" line below: how tools learn the port when --resp-addr used port 0.
    console.log(
      `rustkvd-server ${config.nodeId} serving RESP on ${
        config.respAddr.replace(/:\d+$/, "")
      }:${respServer.port}`,
    );
  }
  // A replica that stopped while the listeners came up is never announced (`stopped` has
  // resolved already: the shutdown below runs at once).
  if (!fatal) {
    log.info("listening", {
      addr: config.listenAddr,
      port: grpcServer.port,
      advertise: config.advertiseAddr,
    });
    // Tests and tools read this line to know the node serves.
    console.log(
      `rustkvd-server ${config.nodeId} listening on ${
        config.listenAddr.replace(/:\d+$/, "")
      }:${grpcServer.port}`,
    );
  }

  const onSignal = () => wake();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  await stopped;
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
  if (fatal) log.error("stopping after a fatal error", { error: fatal.message });
  else log.info("shutting down");
  // Watches never end on their own: tell them why now, or the grace period below waits for
  // them and their clients see a reset instead of the reason.
  node.watches.shutDown("the node is shutting down; reconnect to resume");
  await respServer?.close();
  await grpcServer.close();
  await node.close().catch((e) =>
    log.error("error while closing", { error: (e as Error).message })
  );
  return fatal ? exitFatal : 0;
}

/**
 * Why `addr` cannot be listened on now, found by binding it and letting go
 * at once (undefined: it can, or its port is 0, chosen at bind time).
 */
function cannotListen(addr: string): string | undefined {
  const { host, port } = splitHostPort(addr);
  if (port === 0) return undefined;
  try {
    Deno.listen({ hostname: host, port }).close();
    return undefined;
  } catch (e) {
    return e instanceof Deno.errors.AddrInUse ? "the port is already in use" : (e as Error).message;
  }
}
