/**
 * The seed's three-terminal start sequence with real processes: node1
 * bootstraps alone, node2 joins through node1, node3 through node1 and
 * node2; each joins as a learner and is promoted once caught up. Then:
 * writes through any node read back from all, a restarted member rejoins
 * without a new membership change, and a second node claiming a member's id
 * under another address is refused with a clear message.
 */
import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import { KVClient } from "../../lib/client/kv_client.ts";
import {
  freePort,
  holdFreePort,
  localValue,
  runCli as cli,
  serverDenoArgs,
  TestCluster,
  TestNode,
  waitFor,
} from "./cluster.ts";
import { downAfterMs } from "../../lib/cluster/failure_detector.ts";

const dec = new TextDecoder();

/** Runs a server that is expected to refuse to start; bounded: a wrongly started one is killed. */
async function runServerOnce(args: string[]): Promise<{ code: number; err: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: serverDenoArgs(args),
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(20_000),
  }).output();
  return { code: out.code, err: dec.decode(out.stderr) };
}

function serverArgs(id: string, port: number, root: string, peers: number[]): string[] {
  return [
    "--node-id",
    id,
    "--addr",
    `127.0.0.1:${port}`,
    "--data-dir",
    `${root}/${id}`,
    ...(peers.length > 0 ? ["--peers", peers.map((p) => `localhost:${p}`).join(",")] : []),
  ];
}

Deno.test({
  name:
    "join: the seed's start sequence forms a 3-voter cluster; restart rejoins; id clash refused",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "rustkvd-join-" });
    const [p1, p2, p3] = [freePort(), freePort(), freePort()];
    const nodes = [
      new TestNode("node1", p1, `${root}/node1`, serverArgs("node1", p1, root, [])),
      new TestNode("node2", p2, `${root}/node2`, serverArgs("node2", p2, root, [p1])),
      new TestNode("node3", p3, `${root}/node3`, serverArgs("node3", p3, root, [p1, p2])),
    ];
    const endpoints = nodes.map((n) => n.addr);
    const client = new KVClient({ endpoints, timeoutMs: 5_000 });
    try {
      for (const n of nodes) await n.start(30_000);

      // Both joiners end up voters, and everyone agrees on the member list.
      await waitFor("three voters", async () => {
        const list = await client.memberList();
        return list.members.length === 3 && list.members.every((m) => m.role === "voter");
      }, { nodes });
      const list = await client.memberList();
      assertEquals(
        list.members.map((m) => `${m.id}@${m.addr}`).sort(),
        [`node1@127.0.0.1:${p1}`, `node2@127.0.0.1:${p2}`, `node3@127.0.0.1:${p3}`],
      );
      assertTrue(nodes[1].output.includes("joined a cluster"), nodes[1].output);
      assertTrue(nodes[0].output.includes("promoted a learner to voter"), nodes[0].output);

      // Writes through any node; linearizable reads from every node see all of them.
      for (const [i, n] of nodes.entries()) {
        const via = new KVClient({ endpoints: [n.addr], timeoutMs: 5_000 });
        try {
          await via.put(`user:${i}`, `written via ${n.id}`);
        } finally {
          via.close();
        }
      }
      for (let i = 0; i < 3; i++) {
        const kv = await client.get(`user:${i}`);
        assertEquals(kv && dec.decode(kv.value), `written via ${nodes[i].id}`);
      }
      await waitFor("every node to hold every write", async () => {
        for (const n of nodes) {
          for (let i = 0; i < 3; i++) {
            if ((await localValue(n.addr, `user:${i}`)) !== `written via ${nodes[i].id}`) {
              return false;
            }
          }
        }
        return true;
      }, { nodes });

      // Membership changes back to back, under writes: each one waits for the one
      // before it to be applied everywhere it matters, none fails as "in progress".
      const ghostAddr = `127.0.0.1:${freePort()}`;
      let writing = true;
      const writer = (async () => {
        for (let i = 0; writing && i < 5_000; i++) await client.put(`churn:${i % 16}`, `${i}`);
      })();
      try {
        for (let round = 0; round < 8; round++) {
          const added = await client.memberAdd("ghost", ghostAddr);
          assertEquals(added.members.find((m) => m.id === "ghost")?.role, "learner");
          const removed = await client.memberRemove("ghost");
          assertEquals(removed.members.some((m) => m.id === "ghost"), false);
        }
      } finally {
        writing = false;
        await writer;
      }

      // A restart with the same data dir rejoins without a membership change.
      const changesBefore = nodes[0].output.split("membership changed").length;
      await nodes[1].kill();
      await nodes[1].start(30_000);
      await client.put("after-restart", "yes");
      await waitFor("node2 to serve the write after its restart", async () => {
        return (await localValue(nodes[1].addr, "after-restart")) === "yes";
      }, { nodes });
      assertEquals(nodes[0].output.split("membership changed").length, changesBefore);
      assertEquals((await client.memberList()).members.length, 3);

      // Failure detection: node2 down longer than the threshold shows as down on the
      // leader and on the other follower, then healthy again once restarted.
      const healthOf = async (viewer: TestNode, id: string) => {
        const c = new KVClient({ endpoints: [viewer.addr], timeoutMs: 2_000 });
        try {
          return (await c.status()).members.find((m) => m.id === id)?.health;
        } finally {
          c.close();
        }
      };
      // node2 was just restarted: node3 calls it healthy once its keep-alives arrive.
      await waitFor(
        "node3 to hear from the restarted node2",
        async () => (await healthOf(nodes[2], "node2")) === "healthy",
        { nodes },
      );
      await nodes[1].kill();
      await waitFor(
        "node2 to show as down on node1 and node3",
        async () =>
          (await healthOf(nodes[0], "node2")) === "down" &&
          (await healthOf(nodes[2], "node2")) === "down",
        { nodes, timeoutMs: downAfterMs + 5_000 },
      );
      await nodes[1].start(30_000);
      await waitFor(
        "node2 to show as healthy again",
        async () =>
          (await healthOf(nodes[0], "node2")) === "healthy" &&
          (await healthOf(nodes[2], "node2")) === "healthy",
        { nodes },
      );

      // Another process claiming node2's id under another address is refused.
      const clashPort = freePort();
      const clash = await new Deno.Command(Deno.execPath(), {
        args: serverDenoArgs(serverArgs("node2", clashPort, `${root}/clash`, [p1])),
        stdout: "piped",
        stderr: "piped",
        // Bounded: a refused join exits at once; a wrongly accepted one is killed here.
        signal: AbortSignal.timeout(20_000),
      }).output();
      const err = dec.decode(clash.stderr);
      assertEquals(clash.code, 1, err);
      assertTrue(err.includes("node2 is already a member at 127.0.0.1:" + p2), err);
      assertEquals((await client.memberList()).members.length, 3);

      // A data dir from another cluster, started with --peers of this one, is refused.
      const otherPort = freePort();
      const other = new TestNode(
        "lone",
        otherPort,
        `${root}/lone`,
        serverArgs("lone", otherPort, root, []),
      );
      await other.start(30_000);
      await other.stop();
      const foreign = await new Deno.Command(Deno.execPath(), {
        args: serverDenoArgs(serverArgs("lone", otherPort, root, [p1])),
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(20_000),
      }).output();
      const foreignErr = dec.decode(foreign.stderr);
      assertEquals(foreign.code, 1, foreignErr);
      assertTrue(
        /belongs to cluster \w+, but --peers .* are cluster \w+/.test(foreignErr),
        foreignErr,
      );

      // A voter whose data dir was lost, started again with its command, is refused: with an
      // empty log it could elect a leader that lacks a write it had acknowledged.
      await nodes[2].kill();
      await Deno.remove(nodes[2].dataDir, { recursive: true });
      const wiped = await runServerOnce(nodes[2].args);
      assertEquals(wiped.code, 1, wiped.err);
      assertTrue(
        wiped.err.includes(
          "node3 is already a voter of this cluster and asks to join with an empty data dir",
        ),
        wiped.err,
      );
      assertEquals((await client.memberList()).members.length, 3);
    } finally {
      client.close();
      await Promise.all(nodes.map((n) => n.kill()));
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "membership: grow to 5 under a writer, remove a follower, then the leader: no acknowledged write lost",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "rustkvd-members-" });
    // Nodes 4 and 5 start seconds later: each node holds its port until it starts.
    const holds = Array.from({ length: 5 }, holdFreePort);
    const ports = holds.map((l) => (l.addr as Deno.NetAddr).port);
    const nodes = ports.map((p, i) => {
      const node = new TestNode(
        `node${i + 1}`,
        p,
        `${root}/node${i + 1}`,
        serverArgs(`node${i + 1}`, p, root, i === 0 ? [] : [ports[0]]),
      );
      node.portHold = holds[i];
      return node;
    });
    const client = new KVClient({
      endpoints: nodes.slice(0, 3).map((n) => n.addr),
      timeoutMs: 5_000,
    });
    const writer = new KVClient({ endpoints: nodes.map((n) => n.addr), timeoutMs: 5_000 });
    const acked = new Map<string, string>();
    let stop = false;
    let longestPauseMs = 0;
    let writerError: unknown;
    try {
      for (const n of nodes.slice(0, 3)) await n.start(30_000);
      await waitFor("three voters", async () => {
        const list = await client.memberList();
        return list.members.filter((m) => m.role === "voter").length === 3;
      }, { nodes });

      // One writer, one request in flight, unique values; idempotent retries inside the client.
      const writing = (async () => {
        let last = performance.now();
        const deadline = Date.now() + 60_000;
        for (let i = 0; !stop && Date.now() < deadline; i++) {
          try {
            await writer.put(`w:${i}`, `v${i}`);
            acked.set(`w:${i}`, `v${i}`);
            const now = performance.now();
            longestPauseMs = Math.max(longestPauseMs, now - last);
            last = now;
          } catch (e) {
            writerError = e;
          }
        }
      })();

      for (const n of nodes.slice(3)) await n.start(30_000);
      await waitFor("five voters", async () => {
        const list = await client.memberList();
        return list.members.filter((m) => m.role === "voter").length === 5;
      }, { nodes });

      const leader = (await client.memberList()).leaderId;
      const follower = nodes.find((n) => n.id !== leader && n.id !== "node1")!;
      const afterFollower = await client.memberRemove(follower.id);
      assertEquals(afterFollower.members.some((m) => m.id === follower.id), false);
      await follower.kill();

      // Removing the leader moves leadership first; the client follows it.
      const afterLeader = await client.memberRemove(leader);
      assertEquals(afterLeader.members.map((m) => m.id).includes(leader), false);
      assertEquals(afterLeader.members.length, 3);
      assertTrue(afterLeader.leaderId !== leader, `leader still ${afterLeader.leaderId}`);
      await nodes.find((n) => n.id === leader)!.kill();
      await new Promise((r) => setTimeout(r, 500));
      stop = true;
      await writing;

      assertTrue(acked.size > 20, `only ${acked.size} writes acknowledged`);
      assertTrue(longestPauseMs < 3_000, `the writer paused for ${longestPauseMs.toFixed(0)} ms`);
      const reader = new KVClient({
        endpoints: nodes.filter((n) => n.running).map((n) => n.addr),
        timeoutMs: 5_000,
      });
      try {
        for (const [key, value] of acked) {
          const kv = await reader.get(key);
          assertEquals(kv && dec.decode(kv.value), value, key);
        }
      } finally {
        reader.close();
      }
      console.log(
        `membership: ${acked.size} writes acknowledged and read back, longest pause ` +
          `${longestPauseMs.toFixed(0)} ms, last writer error: ${
            (writerError as Error)?.message ?? "none"
          }`,
      );
    } finally {
      stop = true;
      client.close();
      writer.close();
      await Promise.all(nodes.map((n) => n.kill()));
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "join: a node joining after the log was compacted catches up by snapshot; CLI member, locate, status",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "rustkvd-join-snap-" });
    const [p1, p2, p3] = [freePort(), freePort(), freePort()];
    const small = ["--snapshot-entries", "50"];
    const nodes = [
      new TestNode("node1", p1, `${root}/node1`, [...serverArgs("node1", p1, root, []), ...small]),
      new TestNode("node2", p2, `${root}/node2`, [
        ...serverArgs("node2", p2, root, [p1]),
        ...small,
      ]),
      new TestNode("node3", p3, `${root}/node3`, [
        ...serverArgs("node3", p3, root, [p1]),
        ...small,
      ]),
    ];
    const client = new KVClient({ endpoints: [nodes[0].addr], timeoutMs: 5_000 });
    try {
      await nodes[0].start(30_000);
      for (let i = 0; i < 200; i++) await client.put(`k${i}`, `v${i}`);
      await waitFor(
        "node1 to compact its log",
        () => nodes[0].output.includes("compacted the raft log"),
        { nodes },
      );
      await nodes[1].start(30_000);
      await nodes[2].start(30_000);
      await waitFor("three voters", async () => {
        const list = await client.memberList();
        return list.members.filter((m) => m.role === "voter").length === 3;
      }, { nodes });
      assertTrue(nodes[1].output.includes("installed a snapshot"), nodes[1].output);
      await waitFor("node2 to hold every key", async () => {
        for (let i = 0; i < 200; i += 37) {
          if ((await localValue(nodes[1].addr, `k${i}`)) !== `v${i}`) return false;
        }
        return (await localValue(nodes[1].addr, "k199")) === "v199";
      }, { nodes });

      const peers = ["--peers", nodes.map((n) => n.addr).join(",")];
      const members = await cli([...peers, "member", "list"]);
      assertEquals(members.code, 0, members.err);
      assertEquals(
        members.out.trim().split("\n").map((l) => l.split("\t").slice(0, 3).join(" ")).sort(),
        [
          `node1 127.0.0.1:${p1} voter`,
          `node2 127.0.0.1:${p2} voter`,
          `node3 127.0.0.1:${p3} voter`,
        ],
      );
      const locate = await cli([...peers, "--json", "locate", "user:1001"]);
      assertEquals(locate.code, 0, locate.err);
      const placement = JSON.parse(locate.out);
      assertEquals(
        [placement.owner, ...placement.replicas].sort(),
        ["node1", "node2", "node3"],
      );
      const status = await cli(["--peers", nodes[2].addr, "status"]);
      assertEquals(status.code, 0, status.err);
      const lines = status.out.trim().split("\n");
      assertTrue(
        /^Node: node3 \| Role: follower \| Term: \d+ \| Leader: node1$/.test(lines[0]),
        lines[0],
      );
      assertTrue(/^Health: node1 healthy .* \| node2 healthy /.test(lines[2]), lines[2]);

      // Removing a member through the CLI, then adding it back under the same id is refused
      // while it is a member, and accepted after removal.
      const added = await cli([...peers, "member", "add", "node2", "127.0.0.1:1"]);
      assertEquals(added.code, 1);
      assertTrue(added.err.includes("node2 is already a member at"), added.err);
      const removed = await cli([...peers, "member", "remove", "node3"]);
      assertEquals(removed.code, 0, removed.err);
      assertTrue(!removed.out.includes("node3"), removed.out);
    } finally {
      client.close();
      await Promise.all(nodes.map((n) => n.kill()));
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "join: a static member whose data dir was lost is refused instead of bootstrapping again",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using cluster = await TestCluster.start(3);
    const client = cluster.client();
    const leader = await cluster.waitForLeader();
    const { version } = await client.put("acknowledged", "yes");
    // A follower loses its data once every member has applied the write. (A wiped leader's
    // peers may not have learned that its last writes committed, and report the revision
    // before them; its empty log cannot win their votes, so those writes are safe anyway.)
    for (const n of cluster.nodes) {
      await waitFor(
        `${n.id} to apply the write`,
        async () => (await client.status({ endpoint: n.addr })).revision >= version,
      );
    }
    const wipedNode = cluster.nodes.find((n) => n.id !== leader)!;
    await wipedNode.kill();
    await Deno.remove(wipedNode.dataDir, { recursive: true });
    const wiped = await runServerOnce(wipedNode.args);
    assertEquals(wiped.code, 1, wiped.err);
    assertTrue(/cluster \w+ has moved on without this member \(/.test(wiped.err), wiped.err);
    assertTrue(wiped.err.includes(`member remove ${wipedNode.id}`), wiped.err);
  },
});
