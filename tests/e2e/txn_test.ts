/**
 * The KVStore Txn call on a 3-node cluster of real processes: compare-and-swap
 * increments from concurrent clients lose nothing and apply nothing twice,
 * also across a kill -9 of the leader; a retried transaction gets its first
 * answer; bad transactions are refused with the rule they broke.
 */
import * as grpc from "@grpc/grpc-js";
import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import { loadRustkvdPackage } from "../../lib/server/proto.ts";
import type { KVClient } from "../../lib/client/kv_client.ts";
import { type Msg, rawCall, TestCluster } from "./cluster.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Adds one to "counter" by compare-and-swap: the value read, then a Txn
 * that writes value + 1 if the version is still the one read, and answers
 * the current value otherwise. Returns the value written, or undefined
 * when the call failed (outcome unknown) or no attempt won in 500.
 */
async function increment(client: KVClient): Promise<number | "unknown" | undefined> {
  let current = await client.get("counter");
  for (let attempt = 0; attempt < 500; attempt++) {
    const n = current ? Number(dec.decode(current.value)) : 0;
    let r;
    try {
      r = await client.txn({
        compare: [{ key: "counter", version: current?.version ?? 0 }],
        success: [{ put: "counter", value: String(n + 1) }],
        failure: [{ get: "counter" }],
      });
    } catch {
      return "unknown";
    }
    if (r.succeeded) return n + 1;
    const seen = r.results[0];
    current = seen.kind === "get" ? seen.kv : undefined;
  }
  return undefined;
}

Deno.test({
  name:
    "Txn: concurrent compare-and-swap increments lose none and repeat none, across a leader kill",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using cluster = await TestCluster.start(3);
    const leader = await cluster.waitForLeader();
    const workers = 6;
    const perWorker = 30;
    const written: number[] = [];
    let unknown = 0;
    let killed = false;
    await Promise.all(Array.from({ length: workers }, async () => {
      const client = cluster.client(undefined, 10_000);
      for (let i = 0; i < perWorker; i++) {
        const r = await increment(client);
        if (r === "unknown") unknown++;
        else if (r !== undefined) written.push(r);
        if (!killed && written.length >= (workers * perWorker) / 3) {
          killed = true;
          await cluster.node(leader).kill();
        }
      }
    }));
    assertTrue(killed, "the leader was killed mid-run");
    console.log(`${written.length} increments acknowledged, ${unknown} unknown`);
    const final = Number(dec.decode((await cluster.client().get("counter"))!.value));
    // Every acknowledged increment wrote its own value: no two won with the same version read.
    assertEquals(new Set(written).size, written.length, "two increments wrote the same value");
    // None lost: the counter counts every acknowledged one (and at most the unknown ones more).
    assertTrue(
      final >= written.length && final <= written.length + unknown,
      `counter ${final}, ${written.length} acknowledged, ${unknown} unknown`,
    );
    assertTrue(Math.max(...written) <= final, "an acknowledged value above the final count");
    assertTrue(written.length >= workers * perWorker * 0.9, `only ${written.length} acknowledged`);
  },
});

Deno.test({
  name: "Txn: a retry with the same request id gets the first answer; bad transactions are refused",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using cluster = await TestCluster.start(3);
    const leader = await cluster.waitForLeader();
    const client = cluster.client();
    const x = await client.put("x", "1");
    await client.put("y", "why");
    const txn = {
      compare: [{ key: "x", version: x.version }],
      success: [{ put: "x", value: "2", prevKv: true }, { get: "y" }, { delete: "z" }],
      failure: [{ get: "x" }],
    };
    const first = await client.txn(txn, { requestId: "txn-retry-1" });
    assertEquals(first.succeeded, true);
    // Run fresh now, the comparison would fail (x changed): the retry is answered from history.
    const again = await client.txn(txn, { requestId: "txn-retry-1" });
    assertEquals(again, first);
    const prev = first.results[0];
    assertEquals(prev.kind === "put" && prev.prev && dec.decode(prev.prev.value), "1");
    const y = first.results[1];
    assertEquals(y.kind === "get" && y.kv && dec.decode(y.kv.value), "why");
    assertEquals(first.results[2], {
      kind: "delete",
      version: first.revision,
      deleted: false,
      prev: undefined,
    });
    assertEquals(dec.decode((await client.get("x"))!.value), "2");
    // A fresh id runs it again: now the failure list.
    const fresh = await client.txn(txn);
    assertEquals(fresh.succeeded, false);
    const seen = fresh.results[0];
    assertEquals(seen.kind === "get" && seen.kv && dec.decode(seen.kv.value), "2");
    // It may be sent again (it can write), so it committed its conditions with its request id,
    // which took a revision for the id's record.
    assertEquals(fresh.revision, first.revision + 1);
    // One that can only read commits nothing: the revision stays.
    const read = await client.txn({ compare: [{ key: "x", value: "2" }], success: [{ get: "y" }] });
    assertEquals([read.succeeded, read.revision], [true, fresh.revision]);

    const pkg = loadRustkvdPackage();
    const KV = pkg.KVStore as grpc.ServiceClientConstructor;
    const raw = new KV(cluster.node(leader).addr, grpc.credentials.createInsecure());
    const call = (request: Msg) => rawCall(raw, "Txn", request);
    const k = enc.encode("k");
    const before = (await client.status({ endpoint: cluster.node(leader).addr })).revision;
    const cases: Array<[string, Msg, RegExp]> = [
      ["same key twice", { success: [{ get: { key: k } }, { put: { key: k } }] }, /two success/],
      ["an empty operation", { success: [{}] }, /must set one of put, delete or get/],
      ["if_version on a put", { success: [{ put: { key: k, if_version: 3 } }] }, /compare/],
      ["a get at a version", { failure: [{ get: { key: k, version: 2 } }] }, /must be unset/],
      ["an empty key", { compare: [{ key: new Uint8Array() }] }, /key must not be empty/],
      [
        "too many operations",
        {
          success: Array.from({ length: 1_001 }, (_, i) => ({ get: { key: enc.encode(`k${i}`) } })),
        },
        /at most 1000 comparisons and operations, got 1001/,
      ],
    ];
    for (const [what, request, message] of cases) {
      const r = await call(request);
      assertEquals(r.code, grpc.status.INVALID_ARGUMENT, `${what}: ${r.details}`);
      assertTrue(message.test(r.details), `${what}: ${r.details}`);
    }
    const after = (await client.status({ endpoint: cluster.node(leader).addr })).revision;
    assertEquals(after, before, "a refused transaction changed nothing");
  },
});

Deno.test({
  name: "Txn: a retry sent while the first attempt waits to commit gets the outcome that commits",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Elections slow enough that pausing both followers for a second changes no leader.
    await using cluster = await TestCluster.start(3, {
      extraArgs: ["--election-ms", "4000", "--heartbeat-ms", "100"],
    });
    const leader = await cluster.waitForLeader();
    const client = cluster.client([leader]);
    await client.put("k", "v", { ttlSecs: 2 });
    const k = (await client.get("k"))!;
    const KV = loadRustkvdPackage().KVStore as grpc.ServiceClientConstructor;
    const raw = new KV(cluster.node(leader).addr, grpc.credentials.createInsecure());
    // Runs the success list while k lives, the failure list (reads only) once it expired.
    const request = {
      compare: [{ key: enc.encode("k"), version: k.version }],
      success: [{ put: { key: enc.encode("y"), value: enc.encode("written") } }],
      failure: [{ get: { key: enc.encode("k") } }],
      request_id: "in-flight-1",
    };
    const sleepUntil = (t: number) =>
      new Promise((r) => setTimeout(r, Math.max(0, t - Date.now())));
    await sleepUntil(k.expiresAtMs - 600);
    const followers = cluster.nodes.filter((n) => n.id !== leader);
    for (const f of followers) await f.signal("SIGSTOP");
    let first, retry;
    try {
      // Planned while k lives: it proposes its put, which cannot commit yet.
      const firstCall = rawCall(raw, "Txn", request);
      await sleepUntil(k.expiresAtMs + 150);
      // The client's retry, planned once k expired: its own plan writes nothing.
      const retryCall = rawCall(raw, "Txn", request);
      await new Promise((r) => setTimeout(r, 300));
      for (const f of followers) await f.signal("SIGCONT");
      [first, retry] = await Promise.all([firstCall, retryCall]);
    } finally {
      for (const f of followers) await f.signal("SIGCONT");
    }
    assertEquals([first.code, retry.code], [0, 0], `${first.details} ${retry.details}`);
    const y = await client.get("y");
    assertEquals(y && dec.decode(y.value), "written", "the first attempt committed");
    // Both answers tell what committed: the success list, at the first attempt's revision.
    assertEquals(first.response.succeeded, true);
    assertEquals(
      retry.response.succeeded,
      true,
      "the retry answered an outcome that did not commit",
    );
    assertEquals(retry.response.revision, first.response.revision);
  },
});

Deno.test({
  name: "Txn: a retry whose history was compacted is told so, with the revision it committed at",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using cluster = await TestCluster.start(3);
    const leader = await cluster.waitForLeader();
    const client = cluster.client();
    const x = await client.put("x", "1");
    const txn = {
      compare: [{ key: "x", version: x.version }],
      success: [{ put: "x", value: "2" }],
      failure: [{ get: "x" }],
    };
    const first = await client.txn(txn, { requestId: "compacted-1" });
    for (let i = 0; i < 3; i++) await client.put("x", String(10 + i));
    await client.compact((await client.status({ endpoint: cluster.node(leader).addr })).revision);
    let error = "";
    try {
      await client.txn(txn, { requestId: "compacted-1" });
    } catch (e) {
      error = `${(e as Error).name}: ${(e as Error).message}`;
    }
    assertTrue(
      error.startsWith("CompactedError") && error.includes(`at revision ${first.revision}`),
      error,
    );
  },
});
