/**
 * Process crashes at two points of the durable write path (issue "Node
 * runtime"): right after the Raft log write returned (durable, nothing sent
 * or applied for it yet), and before committed entries are applied. The
 * leader is made to exit abruptly at one of them under a sequential writer;
 * every write the client saw acknowledged must be on every node once the
 * crashed node is back. A process exit keeps what the kernel was given, so
 * losses of unsynced data (power cuts) are covered by the Raft log's crash
 * test (lib/node/raft_log_store_crash_test.ts) and the replica tests, not here.
 */
import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import { localValue, TestCluster, TestNode, waitFor } from "./cluster.ts";

for (const point of ["crash-after-log-write", "crash-before-apply"]) {
  Deno.test({
    name: `crash point ${point} on the leader loses no acknowledged write`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      await using cluster = await TestCluster.start(3);
      const first = await cluster.waitForLeader();
      const client = cluster.client();
      await client.put("warm-up", "1");

      // Restart one follower with the failpoint armed, then hand it leadership.
      const target = cluster.nodes.find((n) => n.id !== first)!;
      await target.kill();
      const armed = new TestNode(target.id, target.port, target.dataDir, target.args, {
        RUSTKVD_FAILPOINTS: `${point}=25`,
      });
      cluster.nodes[cluster.nodes.indexOf(target)] = armed;
      await armed.start();
      await waitFor(
        "the armed node to catch up",
        async () => (await localValue(armed.addr, "warm-up")) === "1",
      );
      await client.transferLeader(armed.id);
      assertEquals(await cluster.waitForLeader(), armed.id);

      // One writer, unique values, request ids (the client retries idempotently).
      const acked = new Map<string, string>();
      for (let i = 0; i < 60; i++) {
        try {
          await client.put(`crash:${i}`, `v${i}`);
          acked.set(`crash:${i}`, `v${i}`);
        } catch {
          // unknown outcome during the failover: not counted as acknowledged
        }
      }
      assertTrue(armed.output.includes(`failpoint ${point}: crashing`), armed.output);
      assertTrue(acked.size >= 50, `only ${acked.size} writes acknowledged`);

      // Bring the crashed node back without the failpoint; every node must hold every ack.
      await armed.kill();
      const healed = new TestNode(armed.id, armed.port, armed.dataDir, armed.args);
      cluster.nodes[cluster.nodes.indexOf(armed)] = healed;
      await healed.start();
      for (const n of cluster.nodes) {
        await waitFor(`${n.id} to hold every acknowledged write`, async () => {
          for (const [k, v] of acked) if ((await localValue(n.addr, k)) !== v) return false;
          return true;
        });
      }
    },
  });
}
