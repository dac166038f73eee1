import net from "node:net";
import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { type Message, MessageType, newMessage } from "../raft/types.ts";
import { Logger } from "./logger.ts";
import { PeerTransport, type TransportHost } from "./transport.ts";

/** A transport host that records what it is told; peers are found through `addrs`. */
function recordingHost(selfId: string, quietMs: number, addrs: Map<string, string>) {
  const delivered: Message[] = [];
  const announced = new Map<string, number>();
  const host: TransportHost = {
    selfId,
    clusterId: () => "c1",
    voteQuietMs: () => quietMs,
    peerVoteQuiet: (id, ms) => announced.set(id, ms),
    addressOf: (id) => addrs.get(id),
    deliver: (messages) => delivered.push(...messages),
    unreachable: () => {},
    sendSnapshot: () => {},
    receiveSnapshot: () => Promise.resolve(),
  };
  return { host, delivered, announced };
}

Deno.test("peer transport: the receiver learns the sender's vote-quiet period from its Hello", async () => {
  const addrs = new Map<string, string>();
  const quiet = () => {};
  const a = recordingHost("n1", 126, addrs);
  const b = recordingHost("n2", 891, addrs);
  const ta = new PeerTransport(a.host, new Logger("n1", "error", quiet));
  const tb = new PeerTransport(b.host, new Logger("n2", "error", quiet));
  const server = net.createServer((socket) => {
    socket.once("data", (first: Uint8Array) => tb.acceptPeer(socket, first));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    addrs.set("n2", `127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    ta.send([
      newMessage({ type: MessageType.Heartbeat, from: "n1", to: "n2", groupId: 0, term: 3 }),
    ]);
    for (let i = 0; i < 200 && b.delivered.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assertEquals(b.delivered.map((m) => [m.type, m.from, m.term]), [[
      MessageType.Heartbeat,
      "n1",
      3,
    ]]);
    assertEquals([...b.announced], [["n1", 126]]);
    assertTrue(a.announced.size === 0, "nothing came the other way");
  } finally {
    ta.close();
    tb.close();
    await new Promise((r) => server.close(r));
  }
});
