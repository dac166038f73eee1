/**
 * The KVStore gRPC API on a 3-node cluster of real processes, as any gRPC
 * client sees it: a table of bad inputs (status code, message naming the
 * limit, no state change), history retention by flag, 64 concurrent clients
 * mixing every operation, and linearizable reads on a paused-then-resumed
 * old leader.
 */
import * as grpc from "@grpc/grpc-js";
import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import { KVClient } from "../../lib/client/kv_client.ts";
import { maxScanResponseBytes, maxValueBytes } from "../../lib/common/limits.ts";
import { loadRustkvdDefinition, loadRustkvdPackage } from "../../lib/server/proto.ts";
import { leaderAddrKey } from "../../lib/server/status.ts";
import { H2Channel } from "../../lib/client/h2_channel.ts";
import { type Msg, rawCall, TestCluster } from "./cluster.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test({
  name: "KV API: bad inputs get INVALID_ARGUMENT or OUT_OF_RANGE naming the limit, state unchanged",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using cluster = await TestCluster.start(3);
    const leader = await cluster.waitForLeader();
    const client = cluster.client();
    await client.put("exists", "1");
    const pkg = loadRustkvdPackage();
    const KV = pkg.KVStore as grpc.ServiceClientConstructor;
    // Not closed: a closing HTTP/2 client can abort a Deno grpc-js server
    // (KVClientOptions.neverIdle); the cluster's processes end with the test.
    const raw = new KV(cluster.node(leader).addr, grpc.credentials.createInsecure(), {
      "grpc.max_send_message_length": 8 * 1024 * 1024,
    });
    const before = (await client.status({ endpoint: cluster.node(leader).addr })).revision;
    const key5k = new Uint8Array(5_000).fill(97);
    const bigValue = new Uint8Array(1024 * 1024 + 1);
    const k = enc.encode("k");
    const cases: Array<[string, string, Msg, number, RegExp]> = [
      ["Get", "empty key", { key: new Uint8Array() }, 3, /key must not be empty/],
      ["Get", "key over 4 KiB", { key: key5k }, 3, /over the limit of 4096 bytes/],
      ["Put", "empty key", { key: new Uint8Array(), value: k }, 3, /key must not be empty/],
      ["Put", "key over 4 KiB", { key: key5k, value: k }, 3, /over the limit of 4096 bytes/],
      ["Put", "value over 1 MiB", { key: k, value: bigValue }, 3, /over the limit of 1048576/],
      ["Put", "TTL over 10 years", { key: k, value: k, ttl_secs: 400_000_000 }, 3, /ttl_secs/],
      ["Put", "request id over 128", { key: k, value: k, request_id: "r".repeat(200) }, 3, /128/],
      ["Delete", "empty key", { key: new Uint8Array() }, 3, /key must not be empty/],
      ["Scan", "limit over 10,000", { prefix: k, limit: 10_001 }, 3, /between 1 and 10000/],
      ["Scan", "prefix and range", { prefix: k, start: k }, 3, /not both/],
      [
        "Scan",
        "start after end",
        { start: enc.encode("z"), end: enc.encode("a") },
        3,
        /start must be before/,
      ],
      ["Get", "future version", { key: k, version: before + 1_000 }, 11, /newer than the current/],
    ];
    for (const [method, what, request, code, message] of cases) {
      const r = await rawCall(raw, method, request);
      assertEquals(r.code, code, `${method} ${what}: ${r.details}`);
      assertTrue(message.test(r.details), `${method} ${what}: ${r.details}`);
    }
    // An oversized message is refused by the transport with RESOURCE_EXHAUSTED, not a crash.
    const huge = await rawCall(raw, "Put", { key: k, value: new Uint8Array(3 * 1024 * 1024) });
    assertTrue(
      huge.code === 8 || huge.code === 3,
      `oversized message: ${huge.code} ${huge.details}`,
    );
    const after = (await client.status({ endpoint: cluster.node(leader).addr })).revision;
    assertEquals(after, before, "no bad request changed the revision");
    assertEquals(dec.decode((await client.get("exists"))!.value), "1");
  },
});

/** The error a promise rejects with (fails the test when it resolves). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected the call to fail");
}

Deno.test({
  name:
    "KV API: CAS, prev_kv, request ids, version reads, keys-only scans, NotLeader with its hint",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using cluster = await TestCluster.start(3);
    const leader = await cluster.waitForLeader();
    const client = cluster.client();
    // Status is per node and a follower's lags the leader's: ask the leader.
    const leaderStatus = () => client.status({ endpoint: cluster.node(leader).addr });

    // Compare-and-set: 0 means "must not exist"; a mismatch reports the current version.
    const v1 = (await client.put("cas", "one", { ifVersion: 0 })).version;
    const v2 = await client.put("cas", "two", { ifVersion: v1, prevKv: true });
    assertEquals(v2.prev && dec.decode(v2.prev.value), "one");
    const lost = await rejection(client.put("cas", "three", { ifVersion: v1 }));
    assertEquals([lost.name, (lost as Msg).currentVersion], ["ConflictError", v2.version]);
    assertEquals((await rejection(client.put("cas", "x", { ifVersion: 0 }))).name, "ConflictError");
    const delLost = await rejection(client.delete("cas", { ifVersion: v1 }));
    assertEquals(delLost.name, "ConflictError");

    // Version reads see the value as of that revision, after later writes.
    assertEquals(dec.decode((await client.get("cas", { version: v1 }))!.value), "one");
    assertEquals(dec.decode((await client.get("cas"))!.value), "two");

    // A retried write with the same request id is applied once.
    const first = await client.put("once", "a", { requestId: "req-1" });
    const again = await client.put("once", "a", { requestId: "req-1" });
    assertEquals(again.version, first.version);
    assertEquals((await leaderStatus()).revision, first.version);

    // Delete with prev_kv, then a delete of a missing key.
    const del = await client.delete("once", { prevKv: true });
    assertEquals([del.deleted, del.prev && dec.decode(del.prev.value)], [true, "a"]);
    assertEquals((await client.delete("once")).deleted, false);

    // Keys-only and version scans.
    for (const k of ["s:1", "s:2", "s:3"]) await client.put(k, `value of ${k}`);
    const at = (await leaderStatus()).revision;
    await client.put("s:4", "later");
    const keys: string[] = [];
    for await (const kv of client.scan({ prefix: "s:", keysOnly: true, version: at })) {
      keys.push(`${dec.decode(kv.key)}=${dec.decode(kv.value)}`);
    }
    assertEquals(keys, ["s:1=", "s:2=", "s:3="]);

    // A follower answers a write with FAILED_PRECONDITION and the leader in metadata.
    const follower = cluster.nodes.find((n) => n.id !== leader)!;
    const KV = loadRustkvdPackage().KVStore as grpc.ServiceClientConstructor;
    const raw = new KV(follower.addr, grpc.credentials.createInsecure());
    const answer = await new Promise<grpc.ServiceError | null>((resolve) =>
      // deno-lint-ignore no-explicit-any
      (raw as any).Put(
        { key: enc.encode("via-follower"), value: enc.encode("x") },
        { deadline: Date.now() + 5_000 },
        (err: grpc.ServiceError | null) => resolve(err),
      )
    );
    assertEquals(answer?.code, grpc.status.FAILED_PRECONDITION);
    const hint = String(answer?.metadata.get("leader-hint")[0] ?? "");
    assertTrue(hint.startsWith(`${leader}@${cluster.node(leader).addr}`), hint);
    assertEquals(await client.get("via-follower"), undefined);
  },
});

Deno.test({
  name: "KV API: history beyond --history-revisions is compacted; older version reads are refused",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using cluster = await TestCluster.start(3, { extraArgs: ["--history-revisions", "10"] });
    await cluster.waitForLeader();
    const client = cluster.client();
    const versions: number[] = [];
    for (let i = 0; i < 40; i++) versions.push((await client.put("h", `v${i}`)).version);
    const last = versions[versions.length - 1];
    const deadline = Date.now() + 15_000;
    let compacted = 0;
    while (Date.now() < deadline) {
      compacted = (await client.status()).compactedRevision;
      if (compacted >= last - 10) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assertTrue(compacted >= last - 10, `compacted only to ${compacted}, last write ${last}`);
    let refused = "";
    try {
      await client.get("h", { version: versions[0] });
    } catch (e) {
      refused = (e as Error).message;
    }
    assertTrue(/compact/i.test(refused), `a read below the compacted revision: ${refused}`);
    const recent = await client.get("h", { version: versions[37] });
    assertEquals(recent && dec.decode(recent.value), "v37");
  },
});

Deno.test({
  name: "KV API: 64 concurrent clients mixing every operation for 10 s see only expected errors",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using cluster = await TestCluster.start(3);
    await cluster.waitForLeader();
    const connections = Array.from({ length: 8 }, () => cluster.client(undefined, 10_000));
    const unexpected: string[] = [];
    const counts: Record<string, number> = {};
    const deadline = Date.now() + 10_000;
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    await Promise.all(Array.from({ length: 64 }, async (_, w) => {
      const c: KVClient = connections[w % connections.length];
      for (let i = 0; Date.now() < deadline; i++) {
        const key = `mix:${rnd(200)}`;
        const op = ["put", "get", "delete", "scan", "cas", "ttl", "serial"][rnd(7)];
        try {
          if (op === "put") await c.put(key, `w${w}-${i}`);
          else if (op === "get") await c.get(key);
          else if (op === "serial") await c.get(key, { consistency: "serializable" });
          else if (op === "delete") await c.delete(key);
          else if (op === "scan") {
            let seen = 0;
            for await (const _ of c.scan({ prefix: "mix:", pageSize: 50 })) if (++seen >= 50) break;
          } else if (op === "ttl") await c.put(key, `t${w}`, { ttlSecs: 60 });
          else {
            const cur = await c.get(key);
            await c.put(key, `cas${w}-${i}`, { ifVersion: cur?.version ?? 0 });
          }
          counts[op] = (counts[op] ?? 0) + 1;
        } catch (e) {
          const name = (e as Error).name;
          // A compare-and-set may lose to a concurrent writer: that is its contract.
          if (op === "cas" && name === "ConflictError") {
            counts.casConflict = (counts.casConflict ?? 0) + 1;
          } else unexpected.push(`${op}: ${name}: ${(e as Error).message}`);
        }
      }
    }));
    console.log(`mixed load: ${JSON.stringify(counts)}`);
    assertEquals(unexpected.slice(0, 5), []);
    assertTrue((counts.put ?? 0) > 50 && (counts.get ?? 0) > 50, JSON.stringify(counts));
  },
});

Deno.test({
  name: "KV API: a linearizable read on a paused old leader never returns the overwritten value",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using cluster = await TestCluster.start(3);
    const oldLeader = await cluster.waitForLeader();
    const client = cluster.client();
    await client.put("fence", "before");
    const paused = cluster.node(oldLeader);
    await paused.signal("SIGSTOP");
    const others = cluster.nodes.filter((n) => n.id !== oldLeader).map((n) => n.id);
    const newLeader = await cluster.waitForLeader(15_000, others);
    assertTrue(newLeader !== oldLeader, "a new leader took over");
    const writer = cluster.client(others);
    await writer.put("fence", "after");
    await paused.signal("SIGCONT");
    // At once, while the old leader may still believe it leads.
    const onOld = new KVClient({ endpoints: [paused.addr], timeoutMs: 5_000, neverIdle: true });
    let value: string | undefined;
    try {
      const kv = await onOld.get("fence");
      value = kv && dec.decode(kv.value);
    } catch (e) {
      value = `error: ${(e as Error).name}`;
    }
    assertTrue(value !== "before", `a stale read on the old leader: ${value}`);
    assertEquals(dec.decode((await writer.get("fence"))!.value), "after");
  },
});

Deno.test({
  name: "KV API: a follower answering a linearizable read names the leader, so clients move there",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using cluster = await TestCluster.start(3);
    const leader = await cluster.waitForLeader();
    const follower = cluster.nodes.find((n) => n.id !== leader)!;
    await cluster.client().put("k", "v");
    // deno-lint-ignore no-explicit-any
    const def = (loadRustkvdDefinition()["rustkvd.KVStore"] as any).Get;
    const call = async (addr: string, consistency: string, version = 0) => {
      const channel = new H2Channel(addr);
      try {
        const bytes = def.requestSerialize({ key: enc.encode("k"), consistency, version });
        const r = await channel.unary(def.path, bytes, Date.now() + 5_000);
        assertEquals(r.code, 0, r.details);
        return r.metadata.get(leaderAddrKey);
      } finally {
        channel.close();
      }
    };
    assertEquals(await call(follower.addr, "LINEARIZABLE"), cluster.node(leader).addr);
    assertEquals(await call(follower.addr, "SERIALIZABLE"), undefined, "answered locally");
    assertEquals(await call(follower.addr, "LINEARIZABLE", 1), undefined, "a version read");
    assertEquals(await call(cluster.node(leader).addr, "LINEARIZABLE"), undefined);
    // A client that knows only the follower reads on from the leader after one answer.
    const client = new KVClient({ endpoints: [follower.addr], timeoutMs: 5_000, neverIdle: true });
    assertEquals(dec.decode((await client.get("k"))!.value), "v");
    await follower.signal("SIGSTOP");
    try {
      assertEquals(dec.decode((await client.get("k"))!.value), "v", "served by the leader");
    } finally {
      await follower.signal("SIGCONT");
    }
  },
});

Deno.test({
  name: "KV API: a Scan page of large values stops at the answer budget and pages on with `more`",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using cluster = await TestCluster.start(1);
    await cluster.waitForLeader();
    const client = cluster.client();
    const value = new Uint8Array(maxValueBytes).fill(7);
    for (let i = 0; i < 8; i++) await client.put(`big/${i}`, value);
    const page = await client.scanPage({ prefix: "big/", limit: 100 });
    const bytes = page.kvs.reduce((n, kv) => n + kv.key.length + kv.value.length, 0);
    assertTrue(page.kvs.length >= 1 && page.kvs.length < 8, `${page.kvs.length} keys in one page`);
    assertTrue(bytes <= maxScanResponseBytes, `${bytes} bytes in one page`);
    assertTrue(page.more, "more keys remain");
    const all: string[] = [];
    for await (const kv of client.scan({ prefix: "big/", pageSize: 100 })) {
      assertEquals(kv.value.length, maxValueBytes);
      all.push(dec.decode(kv.key));
    }
    assertEquals(all, Array.from({ length: 8 }, (_, i) => `big/${i}`), "paging returns every key");
  },
});

Deno.test({
  name: "a serializable scan whose node dies mid-way finishes on a follower that catches up",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using cluster = await TestCluster.start(3, { proxies: true });
    const leader = await cluster.waitForLeader();
    const [f1, f2] = cluster.nodes.filter((n) => n.id !== leader);
    cluster.mesh!.isolate(f2.id); // f2 falls behind the writes below
    const writer = cluster.client([leader, f1.id]);
    const want: string[] = [];
    let last = 0;
    for (let i = 0; i < 10; i++) {
      want.push(`s:${i}`);
      last = (await writer.put(`s:${i}`, `v${i}`)).version;
    }
    const scanner = cluster.client([f1.id, f2.id], 5_000);
    // The scan's revision is the first page's node's: let f1 apply every write first.
    for (let i = 0; i < 100 && (await scanner.status({ endpoint: f1.addr })).revision < last; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const seen: string[] = [];
    let healing: Promise<void> | undefined;
    for await (
      const kv of scanner.scan({ prefix: "s:", pageSize: 3, consistency: "serializable" })
    ) {
      seen.push(new TextDecoder().decode(kv.key));
      if (seen.length === 3) {
        // The next page, pinned at the first page's revision, can only come from f2 once it
        // has caught up.
        await f1.kill();
        healing = new Promise((r) => setTimeout(r, 500)).then(() => cluster.mesh!.heal());
      }
    }
    await healing;
    assertEquals(seen, want);
  },
});
