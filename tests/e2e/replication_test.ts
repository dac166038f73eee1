/**
 * Replication with real processes (issue "Node runtime"): three server
 * processes on 127.0.0.1 elect one leader, replicate and apply writes, and
 * keep every acknowledged write across kill -9 of a follower, of the leader,
 * and of all three.
 */
import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import type { KVClient } from "../../lib/client/kv_client.ts";
import { TestCluster } from "./cluster.ts";

const dec = new TextDecoder();

/** Reads keys with serializable reads, so a client bound to one node sees that node's own state. */
async function readAll(client: KVClient, keys: string[]): Promise<Array<string | undefined>> {
  const out: Array<string | undefined> = [];
  for (const key of keys) {
    const kv = await client.get(key, { consistency: "serializable" }).catch(() => undefined);
    out.push(kv ? dec.decode(kv.value) : undefined);
  }
  return out;
}

/** Waits (bounded) until node `id` has applied at least `index`. */
async function waitApplied(
  cluster: TestCluster,
  id: string,
  index: number,
  timeoutMs = 10_000,
): Promise<void> {
  const client = cluster.client([id], 1_000);
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  while (Date.now() < deadline) {
    const s = await client.status({ endpoint: cluster.node(id).addr }).catch(() => undefined);
    last = s?.appliedIndex ?? last;
    if (s && s.appliedIndex >= index) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${id} applied ${last}, expected >= ${index}\n${cluster.dumpOutput()}`);
}

Deno.test({
  name: "three processes elect one leader and apply every committed write on all nodes",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using cluster = await TestCluster.start(3);
    const leader = await cluster.waitForLeader();
    assertTrue(["n1", "n2", "n3"].includes(leader));
    const client = cluster.client();
    let lastVersion = 0;
    for (let i = 0; i < 20; i++) {
      const { version } = await client.put(`k${i}`, `v${i}`);
      assertTrue(version > lastVersion, "versions increase");
      lastVersion = version;
    }
    const status = await client.status({ endpoint: cluster.node(leader).addr });
    for (const n of cluster.nodes) {
      await waitApplied(cluster, n.id, status.commitIndex);
      const local = cluster.client([n.id]);
      const got = await readAll(local, ["k0", "k19"]);
      assertEquals(got, ["v0", "v19"], `node ${n.id}`);
      const s = await local.status({ endpoint: n.addr });
      assertEquals(s.revision, lastVersion, `revision on ${n.id}`);
    }
  },
});

Deno.test({
  name:
    "a killed follower catches up; a killed leader is replaced and rejoins; a full restart keeps everything",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using cluster = await TestCluster.start(3);
    const leader = await cluster.waitForLeader();
    const client = cluster.client();
    const follower = cluster.nodes.find((n) => n.id !== leader)!;

    await follower.kill();
    for (let i = 0; i < 100; i++) await client.put(`f${i}`, `x${i}`);
    await follower.start();
    const commit = (await client.status({ endpoint: cluster.node(leader).addr })).commitIndex;
    await waitApplied(cluster, follower.id, commit);
    assertEquals(await readAll(cluster.client([follower.id]), ["f0", "f99"]), [
      "x0",
      "x99",
    ]);

    // kill -9 the leader: the others elect a new one, and writes go on.
    await cluster.node(leader).kill();
    const others = cluster.nodes.filter((n) => n.id !== leader).map((n) => n.id);
    const newLeader = await cluster.waitForLeader(10_000, others);
    assertTrue(newLeader !== leader);
    const { version } = await client.put("after-failover", "ok");
    await cluster.node(leader).start();
    await waitApplied(
      cluster,
      leader,
      (await client.status({ endpoint: cluster.node(newLeader).addr })).commitIndex,
    );
    const old = await cluster.client([leader]).status({ endpoint: cluster.node(leader).addr });
    assertEquals(old.role, "follower");
    assertEquals(old.leaderId, newLeader);

    // Restart all three with kill -9: every acknowledged write is still there.
    for (const n of cluster.nodes) await n.kill();
    for (const n of cluster.nodes) await n.start();
    await cluster.waitForLeader();
    const after = cluster.client();
    assertEquals(dec.decode((await after.get("after-failover"))!.value), "ok");
    assertEquals((await after.get("after-failover"))!.version, version);
    for (let i = 0; i < 100; i += 11) {
      assertEquals(dec.decode((await after.get(`f${i}`))!.value), `x${i}`);
    }
  },
});

Deno.test({
  name: "a stalled apply delays answers but not replication: commits go on and the leader stays",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // Every node's first apply that reaches index 30 waits 2 s (a state machine on a stalled disk).
    await using cluster = await TestCluster.start(3, {
      env: { RUSTKVD_FAILPOINTS: "apply-stall=30:2000" },
    });
    const leader = await cluster.waitForLeader();
    const client = cluster.client(undefined, 10_000);
    const status = () => client.status({ endpoint: cluster.node(leader).addr });
    for (let i = 0; i < 40; i++) {
      if ((await status()).commitIndex >= 28) break;
      await client.put(`warm${i}`, "x");
    }
    const before = await status();
    assertTrue(before.commitIndex < 30, `warm-up went past the stall: ${before.commitIndex}`);

    // Writes that reach index 30: every node's apply stalls on them.
    const first = Array.from({ length: 8 }, (_, i) => client.put(`a${i}`, `${i}`));
    await new Promise((r) => setTimeout(r, 400));
    const stalled = await status();
    // Writes proposed during the stall: with applies in the Raft loop, nothing new could commit.
    const second = Array.from({ length: 8 }, (_, i) => client.put(`b${i}`, `${i}`));
    let during = stalled;
    for (let t = 0; t < 20 && during.commitIndex <= stalled.commitIndex; t++) {
      await new Promise((r) => setTimeout(r, 50));
      during = await status();
    }
    assertTrue(
      during.commitIndex > stalled.commitIndex && during.appliedIndex < 30,
      `commit ${stalled.commitIndex} -> ${during.commitIndex}, applied ${during.appliedIndex}`,
    );

    const versions = await Promise.all([...first, ...second]);
    assertEquals(versions.length, 16);
    const after = await status();
    assertEquals(after.role, "leader", "the leader kept its leadership through the stall");
    assertEquals(after.term, before.term, "no election happened");
    for (let i = 0; i < 8; i++) {
      assertEquals(dec.decode((await client.get(`b${i}`))!.value), `${i}`);
    }
  },
});
