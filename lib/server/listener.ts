/**
 * The one listening port of a node. Each accepted connection is told apart
 * by its first bytes: the peer magic `RKVR` goes to the Raft peer channel,
 * anything else (the HTTP/2 preface of a gRPC client) goes to the HTTP/2
 * server. One port keeps the seed's start sequence
 * (`--addr` only) and lets a firewall rule cover everything.
 *
 * @module
 */

import { splitHostPort } from "../common/host_port.ts";
import net from "node:net";
import { peerMagic } from "../node/peer_frame.ts";
import type { PeerTransport } from "../node/transport.ts";

/** A bound listener. */
export interface RunningListener {
  port: number;
  /** Takes no new connections; those open stay (a shutdown drains them first). */
  stopAccepting(): void;
  /** Stops accepting and drops every connection. */
  close(): Promise<void>;
}

/** Bytes needed to decide what a connection speaks. */
const sniffBytes = peerMagic.length;
/** A connection that says nothing for this long is dropped. */
const sniffTimeoutMs = 10_000;

function isPeerMagic(b: Uint8Array): boolean {
  for (let i = 0; i < peerMagic.length; i++) if (b[i] !== peerMagic[i]) return false;
  return true;
}

/** How often the listener checks it still accepts (see `listen`'s `onStuck`). */
const acceptProbeIntervalMs = 5_000;
/** How long a probe connection may wait to be accepted before it counts as a miss. */
const acceptProbeTimeoutMs = 3_000;

/**
 * Listens on `addr` (host:port; port 0 picks a free one). `onStuck` is
 * called if the listener stops accepting: Deno's node:net server stops for
 * good after one accept error (EMFILE, out of file descriptors) without an
 * 'error' event, and the node would go on serving nobody, its peers
 * included. A probe connection to itself every 5 s, after which no
 * connection was accepted for 3 s, twice in a row, reports it.
 */
export function listen(
  addr: string,
  transport: PeerTransport,
  acceptHttp2: (socket: net.Socket, head: Uint8Array) => void,
  onStuck: (reason: string) => void = () => {},
): Promise<RunningListener> {
  const sockets = new Set<net.Socket>();
  /** Connections accepted so far: a probe checks that the count moved. */
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on("close", () => sockets.delete(socket));
    let head = new Uint8Array(0);
    const timer = setTimeout(() => socket.destroy(), sniffTimeoutMs);
    const onData = (chunk: Uint8Array) => {
      const joined = new Uint8Array(head.length + chunk.length);
      joined.set(head);
      joined.set(chunk, head.length);
      head = joined;
      if (head.length < sniffBytes) return;
      clearTimeout(timer);
      socket.off("data", onData);
      if (isPeerMagic(head)) {
        transport.acceptPeer(socket, head);
      } else {
        acceptHttp2(socket, head);
      }
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
  });
  const { host, port } = splitHostPort(addr);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port }, () => {
      server.off("error", reject);
      const bound = (server.address() as net.AddressInfo).port;
      const closed = new Promise<void>((done) => server.once("close", () => done()));
      let accepting = true;
      let misses = 0;
      // splitHostPort drops IPv6 brackets: a wildcard is "0.0.0.0", "::" or empty.
      const probeHost = host === "" || host === "0.0.0.0"
        ? "127.0.0.1"
        : host === "::"
        ? "::1"
        : host;
      let probeWait: ReturnType<typeof setTimeout> | undefined;
      let probe: net.Socket | undefined;
      const probeTimer = setInterval(() => {
        const before = accepted;
        probe = net.connect({ host: probeHost, port: bound });
        const current = probe;
        current.on("error", () => current.destroy()); // no descriptor to probe with: try again
        current.on("connect", () => {
          probeWait = setTimeout(() => {
            current.destroy();
            if (!accepting) return;
            // Any connection accepted meanwhile (the probe's, or another) shows it accepts.
            misses = accepted !== before ? 0 : misses + 1;
            if (misses >= 2) {
              clearInterval(probeTimer);
              onStuck(
                `the listener on ${addr} stopped accepting connections (out of file ` +
                  "descriptors? raise the limit: ulimit -n)",
              );
            }
          }, acceptProbeTimeoutMs);
        });
      }, acceptProbeIntervalMs);
      const stopAccepting = () => {
        if (!accepting) return;
        accepting = false;
        clearInterval(probeTimer);
        clearTimeout(probeWait);
        probe?.destroy();
        server.close();
      };
      resolve({
        port: bound,
        stopAccepting,
        close: () => {
          stopAccepting();
          for (const s of sockets) s.destroy();
          return closed;
        },
      });
    });
  });
}
