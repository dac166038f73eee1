/**
 * rustkvd-cli against a real 3-node cluster: the seed's walkthrough, output
 * formats and exit codes; and a KVClient that keeps working through a leader
 * kill.
 */
import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import { cliDenoArgs, runCli as cli, TestCluster } from "./cluster.ts";

Deno.test({
  name:
    "the seed's CLI walkthrough: put, get, get --version, scan, status, delete, bench, exit codes",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using cluster = await TestCluster.start(3);
    await cluster.waitForLeader();
    const peers = ["--peers", cluster.nodes.map((n) => n.addr).join(",")];
    const one = ["--peers", cluster.nodes[0].addr];

    const put1 = await cli([...peers, "put", "user:1001", '{"name":"Alice","role":"admin"}']);
    assertEquals(put1.code, 0, put1.err);
    const v1 = Number(/^OK \(version: (\d+)\)$/.exec(put1.out.trim())?.[1]);
    assertTrue(v1 > 0, put1.out);
    const put2 = await cli([...peers, "put", "user:1001", '{"name":"Alice","role":"owner"}']);
    const v2 = Number(/^OK \(version: (\d+)\)$/.exec(put2.out.trim())?.[1]);
    assertTrue(v2 > v1);

    assertEquals(
      (await cli([...one, "get", "user:1001"])).out.trim(),
      '{"name":"Alice","role":"owner"}',
    );
    assertEquals(
      (await cli([...one, "get", "user:1001", "--version", String(v1)])).out.trim(),
      '{"name":"Alice","role":"admin"}',
    );
    const missing = await cli([...one, "get", "user:9999"]);
    assertEquals(missing.code, 1);
    assertTrue(missing.err.includes("key not found: user:9999"));

    await cli([...peers, "put", "user:1002", "bob"]);
    await cli([...peers, "put", "other", "x"]);
    const scan = await cli([...one, "scan", "--prefix", "user:", "--limit", "100"]);
    assertEquals(scan.out.trim().split("\n"), [
      'user:1001\t{"name":"Alice","role":"owner"}',
      "user:1002\tbob",
    ]);
    const scanJson = JSON.parse(
      (await cli([...one, "--json", "scan", "--prefix", "user:", "--limit", "1"])).out,
    );
    assertEquals([scanJson.kvs.length, scanJson.more], [1, true]);

    const status = await cli([...one, "status"]);
    const lines = status.out.trim().split("\n");
    assertTrue(
      /^Node: n1 \| Role: (leader|follower) \| Term: \d+ \| Leader: n[123]$/.test(lines[0]),
      lines[0],
    );
    assertTrue(/^Committed: \d+ \| Applied: \d+ \| Peers: \[n2, n3\]$/.test(lines[1]), lines[1]);

    const del = await cli([...peers, "delete", "user:1002"]);
    assertTrue(/^OK \(version: \d+\)$/.test(del.out.trim()), del.out);
    assertEquals((await cli([...peers, "delete", "user:1002"])).code, 1);

    const bench = await cli([
      ...peers,
      "bench",
      "--operations",
      "300",
      "--concurrency",
      "8",
      "--value-size",
      "64",
      "--read-ratio",
      "0.5",
      "--warmup",
      "0",
    ]);
    assertEquals(bench.code, 0, bench.out + bench.err);
    assertTrue(
      bench.out.includes("setup: nodes=3 workers=8 in-flight/worker=1") &&
        bench.out.includes("fsync=fsync"),
      bench.out,
    );
    assertTrue(
      /result: 300 ops in [\d.]+ s = [\d.]+ ops\/s, errors: none/.test(bench.out),
      bench.out,
    );

    const located = (await cli([...one, "locate", "user:42"])).out.trim().split("\n");
    assertTrue(
      /^Key: user:42 \| Position: \d+ \| Owner: n[123] \| Replicas: \[n[123], n[123]\]$/.test(
        located[0],
      ),
      located[0],
    );
    assertTrue(located[1].startsWith("Stored on: [n1, n2, n3] (one Raft group"), located[1]);
    const members = await cli([...one, "member", "list"]);
    assertEquals(members.out.trim().split("\n").map((l) => l.split("\t").slice(0, 3).join(" ")), [
      `n1 ${cluster.nodes[0].addr} voter`,
      `n2 ${cluster.nodes[1].addr} voter`,
      `n3 ${cluster.nodes[2].addr} voter`,
    ]);
    const target = cluster.nodes.find((n) =>
      !members.out.includes(`${n.id}\t${n.addr}\tvoter\tleader`)
    )!;
    const moved = await cli([...peers, "transfer-leader", target.id]);
    assertEquals(moved.out.trim(), `OK (leader: ${target.id})`, moved.err);
    const compacted = await cli([...peers, "compact", String(v2)]);
    assertEquals(compacted.out.trim(), `OK (compacted: ${v2})`, compacted.err);
    assertEquals((await cli([...one, "get", "user:1001", "--version", String(v1)])).code, 1);

    // watch streams events until Ctrl-C.
    const watcher = new Deno.Command(Deno.execPath(), {
      args: cliDenoArgs([...one, "watch", "--prefix", "config:"]),
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    try {
      await new Promise((r) => setTimeout(r, 1_500));
      const put = await cli([...peers, "put", "config:x", "1"]);
      const version = /version: (\d+)/.exec(put.out)![1];
      await new Promise((r) => setTimeout(r, 500));
      watcher.kill("SIGINT");
      const watched = await watcher.output();
      assertEquals(
        new TextDecoder().decode(watched.stdout).trim(),
        `PUT config:x = 1 (version: ${version})`,
      );
    } finally {
      try {
        watcher.kill("SIGKILL");
      } catch { /* exited */ }
    }

    // txn: take a lock only if nobody holds it.
    const take = [
      "txn",
      "--if",
      "version(lock) = 0",
      "--then",
      "put lock me",
      "--else",
      "get lock",
    ];
    const took = await cli([...peers, ...take]);
    assertEquals(took.code, 0, took.err);
    const [head, line] = took.out.trim().split("\n");
    const revision = /^SUCCEEDED \(revision: (\d+)\)$/.exec(head)?.[1];
    assertEquals(line, `OK (version: ${revision})`);
    const held = await cli([...one, "--json", ...take]);
    assertEquals(held.code, 1);
    assertEquals(JSON.parse(held.out).responses[0].get.value, "me");

    const bad = await cli([...one, "put", "k"]);
    assertEquals(bad.code, 2);
    const invalid = await cli([...one, "put", "", "v"]);
    assertEquals(invalid.code, 1);
    assertTrue(
      invalid.err.includes("InvalidArgument") && invalid.err.includes("must not be empty"),
      invalid.err,
    );
  },
});

Deno.test({
  name: "a client keeps reading and writing (idempotently) through a leader kill",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using cluster = await TestCluster.start(3);
    const leader = await cluster.waitForLeader();
    const client = cluster.client(undefined, 8_000);
    await client.put("counter", "0");
    await cluster.node(leader).kill();
    // Every write carries a request id, so retries across the election apply once.
    const versions: number[] = [];
    for (let i = 1; i <= 20; i++) versions.push((await client.put("counter", String(i))).version);
    for (let i = 1; i < versions.length; i++) {
      assertTrue(versions[i] > versions[i - 1], "versions increase");
    }
    assertEquals(new TextDecoder().decode((await client.get("counter"))!.value), "20");
    assertTrue(client.leader !== cluster.node(leader).addr);
  },
});
