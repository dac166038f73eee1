/**
 * Log compaction and snapshots with real processes: a follower kept down
 * while the leader compacts its log catches up through a snapshot streamed
 * over the peer channel.
 */
import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import { TestCluster, waitFor } from "./cluster.ts";

const dec = new TextDecoder();

/** Once the cluster has a leader: its id, a client, and a follower to take down. */
async function leaderAndFollower(cluster: TestCluster) {
  const leader = await cluster.waitForLeader();
  const lagging = cluster.nodes.find((n) => n.id !== leader)!;
  return { leader, client: cluster.client(), lagging };
}

Deno.test({
  name: "a follower behind a compacted log catches up through a snapshot and keeps serving",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using cluster = await TestCluster.start(3, { extraArgs: ["--snapshot-entries", "50"] });
    const { leader, client, lagging } = await leaderAndFollower(cluster);
    await client.put("before", "1");
    await lagging.kill();
    for (let i = 0; i < 300; i++) await client.put(`key${String(i).padStart(3, "0")}`, `value${i}`);
    await client.delete("key000");
    await waitFor(
      "the leader to compact its log",
      () => cluster.node(leader).output.includes("compacted the raft log"),
      { timeoutMs: 15_000 },
    );

    await lagging.start();
    const local = cluster.client([lagging.id]);
    const target = (await client.status({ endpoint: cluster.node(leader).addr })).revision;
    await waitFor(
      "the follower to catch up",
      async () => (await local.status({ endpoint: lagging.addr })).revision >= target,
      { timeoutMs: 15_000 },
    );
    // The log lines arrive through a pipe and may trail the state they report.
    await waitFor(
      "the follower to log the snapshot install",
      () => lagging.output.includes("installed a snapshot"),
      { timeoutMs: 15_000 },
    );
    await waitFor(
      "the leader to log the snapshot it sent",
      () => cluster.node(leader).output.includes("snapshot sent"),
      { timeoutMs: 15_000 },
    );

    // The follower's own state (serializable reads) has every key, and the deleted one is gone.
    assertEquals(
      dec.decode((await local.get("key299", { consistency: "serializable" }))!.value),
      "value299",
    );
    assertEquals(
      dec.decode((await local.get("before", { consistency: "serializable" }))!.value),
      "1",
    );
    assertEquals(await local.get("key000", { consistency: "serializable" }), undefined);
    const page = await local.scanPage({ prefix: "key", limit: 1000, consistency: "serializable" });
    assertEquals(page.kvs.length, 299);
    const status = await local.status({ endpoint: lagging.addr });
    assertEquals(status.revision, target);

    // It keeps replicating after the snapshot, and survives a restart.
    const { version } = await client.put("after", "2");
    await waitFor(
      "the follower to apply a write after the snapshot",
      async () => (await local.status({ endpoint: lagging.addr })).revision >= version,
      { timeoutMs: 15_000, nodes: cluster.nodes },
    );
    await lagging.kill();
    await lagging.start();
    assertEquals(
      dec.decode((await local.get("after", { consistency: "serializable" }))!.value),
      "2",
    );
    assertEquals(
      (await local.scanPage({ prefix: "key", limit: 1000, consistency: "serializable" })).kvs
        .length,
      299,
    );
  },
});

Deno.test({
  name: "a follower a little behind when the log is cut catches up from the kept tail, no snapshot",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // --snapshot-entries 50: the log is cut every 50 entries past a tail of 25 kept ones.
    await using cluster = await TestCluster.start(3, { extraArgs: ["--snapshot-entries", "50"] });
    const { leader, client, lagging } = await leaderAndFollower(cluster);
    // The index of the leader's last cut, from its log line ("compacted the raft log ... index=N").
    const lastCut = () => {
      const all = [
        ...cluster.node(leader).output.matchAll(/compacted the raft log.*?\bindex=(\d+)/g),
      ];
      return all.length === 0 ? -1 : Number(all[all.length - 1][1]);
    };
    const applied = async () =>
      (await client.status({ endpoint: cluster.node(leader).addr })).appliedIndex;
    // A first cut, with everyone up.
    for (let i = 0; i < 200 && lastCut() < 0; i++) await client.put(`pre${i}`, "x");
    await waitFor("the leader's first cut", () => lastCut() >= 0, { timeoutMs: 15_000 });
    const first = lastCut();
    // The next cut comes once the log holds more than 75 entries past it (first + 1 on):
    // stop 10 entries short, take the follower away, then write until the leader cuts again.
    for (let i = 0; i < 200 && (await applied()) < first + 65; i++) {
      await client.put(`mid${i}`, "y");
    }
    await lagging.kill();
    const missedFrom = await applied();
    for (let i = 0; i < 60 && lastCut() === first; i++) await client.put(`miss${i}`, `m${i}`);
    await waitFor("a cut while the follower is down", () => lastCut() > first, {
      timeoutMs: 15_000,
    });
    assertTrue(lastCut() < missedFrom, `the cut at ${lastCut()} keeps what the follower missed`);

    await lagging.start();
    const local = cluster.client([lagging.id]);
    const target = (await client.status({ endpoint: cluster.node(leader).addr })).revision;
    await waitFor(
      "the follower to catch up",
      async () => (await local.status({ endpoint: lagging.addr })).revision >= target,
      { timeoutMs: 15_000 },
    );
    assertEquals(
      dec.decode((await local.get("miss0", { consistency: "serializable" }))!.value),
      "m0",
    );
    assertTrue(!lagging.output.includes("installed a snapshot"), "caught up from the log");
    assertTrue(!cluster.node(leader).output.includes("sending a snapshot"), "no snapshot sent");
  },
});

Deno.test({
  name: "a log of few large entries is cut by size, so it stays bounded on disk",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // Default --snapshot-entries (10,000, tail 5,000): 40 entries of nearly 1 MiB come nowhere
    // near the entry counts, but pass the 32 MiB a log may grow between cuts.
    await using cluster = await TestCluster.start(3);
    const { leader, client } = await leaderAndFollower(cluster);
    const value = new Uint8Array(1000 * 1024).fill(0x61);
    for (let i = 0; i < 40; i++) await client.put(`big${i}`, value);
    await waitFor(
      "the leader to cut its log",
      () => cluster.node(leader).output.includes("compacted the raft log"),
      { timeoutMs: 15_000 },
    );
    // What is left is the catch-up tail (at most 2 MiB of entries at the cut) and what came
    // after the cut, not all 40 MiB. The new segment takes over at a save after the cut and the
    // old one is deleted in the background: small writes keep saves coming meanwhile.
    const raftDir = `${cluster.node(leader).dataDir}/raft`;
    let bytes = 0;
    await waitFor("the old segment to be deleted", async () => {
      await client.put("tick", "x");
      bytes = 0;
      for await (const f of Deno.readDir(raftDir)) {
        bytes += (await Deno.stat(`${raftDir}/${f.name}`).catch(() => ({ size: 0 }))).size;
      }
      return bytes < 16 * 1024 * 1024;
    }, { timeoutMs: 15_000 });
    assertEquals((await client.get("big39"))!.value.length, value.length);
  },
});

/**
 * A follower stopped while 250 writes go in and the leader cuts its log past them: once
 * started again it must catch up by snapshot.
 */
async function followerLeftBehindACut(cluster: TestCluster) {
  const parts = await leaderAndFollower(cluster);
  await parts.lagging.kill();
  for (let i = 0; i < 250; i++) await parts.client.put(`k${i}`, `v${i}`);
  await waitFor(
    "the leader to compact its log",
    () => cluster.node(parts.leader).output.includes("compacted the raft log"),
    { timeoutMs: 15_000 },
  );
  return parts;
}

for (const transport of ["native", "grpc"]) {
  Deno.test({
    name: `a snapshot transfer broken halfway resumes where it stopped (${transport})`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      await using cluster = await TestCluster.start(3, {
        extraArgs: ["--snapshot-entries", "50", "--snapshot-transport", transport],
        env: { RUSTKVD_FAILPOINTS: "snapshot-send-break-after=100" },
      });
      const { leader, client, lagging } = await followerLeftBehindACut(cluster);
      await lagging.start();
      const target = (await client.status({ endpoint: cluster.node(leader).addr })).revision;
      const local = cluster.client([lagging.id]);
      await waitFor(
        "the follower to catch up",
        async () => (await local.status({ endpoint: lagging.addr })).revision >= target,
        { timeoutMs: 15_000, nodes: cluster.nodes },
      );
      await waitFor(
        "the leader to log the resumed transfer",
        () => /snapshot sent .*resumedFrom=100/.test(cluster.node(leader).output),
        { timeoutMs: 15_000, nodes: cluster.nodes },
      );
      const out = cluster.node(leader).output;
      assertTrue(out.includes("breaking the transfer after 100 records"), out);
      assertEquals(
        (await local.scanPage({ prefix: "k", limit: 1000, consistency: "serializable" })).kvs
          .length,
        250,
      );
      // The follower serves new writes after installing it.
      const { version } = await client.put("after", "x");
      await waitFor(
        "the follower to apply a write after the snapshot",
        async () => (await local.status({ endpoint: lagging.addr })).revision >= version,
        { timeoutMs: 15_000, nodes: cluster.nodes },
      );
    },
  });
}

Deno.test({
  name: "the state kept to resume a broken snapshot transfer is released once its peer is removed",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // Every node refuses snapshot transfers: the leader keeps its capture to resume from.
    await using cluster = await TestCluster.start(3, {
      extraArgs: ["--snapshot-entries", "50"],
      env: { RUSTKVD_FAILPOINTS: "snapshot-receive-refuse" },
    });
    const { leader, client, lagging } = await followerLeftBehindACut(cluster);
    await lagging.start();
    await waitFor(
      "a transfer to fail",
      () => cluster.node(leader).output.includes("snapshot transfer failed"),
      { timeoutMs: 15_000, nodes: cluster.nodes },
    );
    await client.memberRemove(lagging.id);
    await waitFor(
      "the leader to release the capture",
      () =>
        /released the state kept to resume a snapshot transfer .*no longer a member/.test(
          cluster.node(leader).output,
        ),
      { timeoutMs: 10_000, nodes: cluster.nodes },
    );
  },
});
