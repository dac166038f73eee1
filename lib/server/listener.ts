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

/** Listens on `addr` (host:port; port 0 picks a free one). */
export function listen(
  addr: string,
  transport: PeerTransport,
  acceptHttp2: (socket: net.Socket, head: Uint8Array) => void,
): Promise<RunningListener> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
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
      const stopAccepting = () => {
        if (!accepting) return;
        accepting = false;
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
