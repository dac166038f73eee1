/**
 * The RESP listener of a node (`--resp-addr`): accepts connections on
 * Deno.listen, bounds how many are open (maxRespConnections), serves each
 * with `serveConnection`, and closes them all on shutdown.
 *
 * @module
 */

import { joinHostPort, splitHostPort } from "../common/host_port.ts";
import { maxRespConnections } from "../common/limits.ts";
import type { KVNode } from "../node/kv_node.ts";
import { buildTable } from "./command_table.ts";
import { keyCommands } from "./commands_keys.ts";
import { multiCommands } from "./commands_multi.ts";
import { serverCommands } from "./commands_server.ts";
import { stringCommands } from "./commands_strings.ts";
import { serveConnection } from "./connection.ts";
import { Session } from "./session.ts";
import { opsSampleIntervalMs, RespStats } from "./stats.ts";
import { RespStore } from "./store.ts";

/** Every RESP command this node serves. */
export const respCommandTable = buildTable([
  ...serverCommands,
  ...stringCommands,
  ...keyCommands,
  ...multiCommands,
]);

/** A running RESP listener. */
export interface RespServer extends AsyncDisposable {
  /** The bound port (useful when the address asked for port 0). */
  port: number;
  /** Stops accepting, closes every connection and waits for their handlers. */
  close(): Promise<void>;
}

/** Starts serving RESP on `addr` (host:port) for `node`. */
export function startRespServer(node: KVNode, addr: string): RespServer {
  const { host: hostname, port: wanted } = splitHostPort(addr);
  const listener = Deno.listen({ hostname, port: wanted });
  const port = (listener.addr as Deno.NetAddr).port;
  const store = new RespStore(node);
  node.respAddr = advertisedRespAddr(hostname, port, node.config.advertiseAddr);
  const conns = new Set<Deno.TcpConn>();
  const handlers = new Set<Promise<void>>();
  const stats = new RespStats();
  const sessions = new Set<Session>();
  const sampler = node.clock.setInterval(
    () => stats.sample(node.clock.nowMs()),
    opsSampleIntervalMs,
  );
  const base = {
    store,
    log: node.log,
    table: respCommandTable,
    respAddr: joinHostPort(hostname, port),
    stats,
    sessions,
  };
  const refused = new TextEncoder().encode("-ERR max number of clients reached\r\n");

  let closed = false;
  const accepting = (async () => {
    let backoffMs = 10;
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
        backoffMs = 10;
      } catch (e) {
        if (closed || e instanceof Deno.errors.BadResource) return;
        // Out of file descriptors (or another passing accept error): the listener stays open
        // and is tried again, instead of taking no client until a restart.
        node.log.warn("RESP accept failed; retrying", {
          error: (e as Error).message,
          retryMs: backoffMs,
        });
        await new Promise((r) => setTimeout(r, backoffMs));
        backoffMs = Math.min(1_000, backoffMs * 2);
        continue;
      }
      if (conns.size >= maxRespConnections) {
        stats.rejectedConnections++;
        conn.write(refused).catch(() => {}).finally(() => {
          try {
            conn.close();
          } catch { /* closed */ }
        });
        continue;
      }
      const remote = conn.remoteAddr as Deno.NetAddr;
      conns.add(conn);
      stats.connectionsReceived++;
      stats.connectedClients = conns.size;
      const session = new Session(`${remote.hostname}:${remote.port}`, node.clock.nowMs());
      sessions.add(session);
      const h = serveConnection(conn, { ...base, session }).finally(() => {
        conns.delete(conn);
        sessions.delete(session);
        stats.connectedClients = conns.size;
        handlers.delete(h);
      });
      handlers.add(h);
    }
  })().catch((e) => {
    if (!(e instanceof Deno.errors.BadResource)) {
      node.log.error("RESP listener stopped", { error: (e as Error).message });
    }
  });

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      sampler.cancel();
      node.respAddr = "";
      closed = true;
      try {
        listener.close();
      } catch { /* closed */ }
      await accepting;
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await Promise.allSettled([...handlers]);
      store.close();
    })();
    return closing;
  };
  return { port, close, [Symbol.asyncDispose]: close };
}

/**
 * The RESP address peers report for this node (NodeStatus, then their
 * ROLE replies): the bound host, or, for a wildcard (0.0.0.0, ::), the host
 * clients are told to use for gRPC (--advertise-addr); IPv6 bracketed.
 */
export function advertisedRespAddr(hostname: string, port: number, advertiseAddr: string): string {
  const wildcard = hostname === "" || hostname === "0.0.0.0" || hostname === "::" ||
    hostname === "[::]";
  return joinHostPort(wildcard ? splitHostPort(advertiseAddr).host : hostname, port);
}
