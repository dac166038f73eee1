/**
 * Watch and TTL through the real gRPC API on a 3-node cluster: ordered
 * events, replay from a past version, resume across a server kill with no
 * gap and no duplicate, TTL expiry seen as a DELETE, compacted starts refused.
 */
import { assertEquals, assertRejects, assertTrue } from "../../lib/common/test_helpers.ts";
import { CompactedError } from "../../lib/common/errors.ts";
import type { WatchEvent } from "../../lib/client/kv_client.ts";
import { TestCluster, waitFor } from "./cluster.ts";

const dec = new TextDecoder();
const describe = (e: WatchEvent) =>
  `${e.type} ${dec.decode(e.kv.key)}=${dec.decode(e.kv.value)}@${e.version}`;

async function collect(
  it: AsyncIterableIterator<WatchEvent>,
  n: number,
  timeoutMs = 10_000,
): Promise<WatchEvent[]> {
  const out: WatchEvent[] = [];
  const timer = setTimeout(() => it.return?.(), timeoutMs);
  try {
    for await (const e of it) {
      out.push(e);
      if (out.length === n) break;
    }
  } finally {
    clearTimeout(timer);
  }
  return out;
}

/** The next event, without ending the watch (a for-await break would); fails after `ms`. */
async function nextWithin(it: AsyncIterableIterator<WatchEvent>, ms: number): Promise<WatchEvent> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const r = await Promise.race([
      it.next(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no event within ${ms} ms`)), ms);
      }),
    ]);
    if (r.done) throw new Error("the watch ended");
    return r.value;
  } finally {
    clearTimeout(timer);
  }
}

Deno.test({
  name:
    "watch: live events in order, replay from a version, TTL expiry as DELETE, compacted start refused",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using cluster = await TestCluster.start(3);
    await cluster.waitForLeader();
    const client = cluster.client();
    const first = await client.put("config:a", "1");
    await client.put("other", "x");
    await client.put("config:b", "2");
    await client.delete("config:a");

    // Replay from the first version, then live.
    const ac = new AbortController();
    const replay = client.watch({
      prefix: "config:",
      startVersion: first.version,
      prevKv: true,
      signal: ac.signal,
    });
    const live = client.put("config:c", "3", { ttlSecs: 1 });
    const events = await collect(replay, 5);
    const v = first.version;
    assertEquals(events.slice(0, 3).map(describe), [
      `put config:a=1@${v}`,
      `put config:b=2@${v + 2}`,
      `delete config:a=@${v + 3}`,
    ]);
    assertEquals(dec.decode(events[2].prev!.value), "1");
    assertEquals(describe(events[3]), `put config:c=3@${(await live).version}`);
    // The TTL expires: the leader deletes the key through Raft, watchers see it.
    assertEquals(events[4].type, "delete");
    assertEquals(dec.decode(events[4].kv.key), "config:c");
    assertEquals(await client.get("config:c"), undefined);
    ac.abort();

    // Compact history; once every replica has applied it (a follower applies
    // it a moment after the leader answers), a watch from below it is refused.
    const compacted = await client.compact(first.version + 2);
    assertTrue(compacted >= first.version + 2);
    const deadline = Date.now() + 5_000;
    for (const n of cluster.nodes) {
      while ((await client.status({ endpoint: n.addr })).compactedRevision < compacted) {
        assertTrue(Date.now() < deadline, `${n.id} never applied the compaction`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    await assertRejects(async () => {
      for await (const _ of client.watch({ prefix: "config:", startVersion: first.version })) break;
    }, CompactedError);
  },
});

Deno.test({
  name: "watch: resumed after the serving node is killed, every event arrives exactly once",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using cluster = await TestCluster.start(3);
    await cluster.waitForLeader();
    const writer = cluster.client(undefined, 8_000);
    // The watcher talks to n1 first; n1 is killed mid-stream.
    const watcherClient = cluster.client(["n1", "n2", "n3"], 8_000);
    const ac = new AbortController();
    const stream = watcherClient.watch({ prefix: "w:", signal: ac.signal });
    const received = collect(stream, 60, 20_000);
    await new Promise((r) => setTimeout(r, 300));
    const written: number[] = [];
    for (let i = 0; i < 30; i++) written.push((await writer.put(`w:${i % 7}`, `v${i}`)).version);
    await cluster.node("n1").kill();
    for (let i = 30; i < 60; i++) written.push((await writer.put(`w:${i % 7}`, `v${i}`)).version);
    const events = await received;
    ac.abort();
    assertEquals(events.map((e) => e.version), written);
    assertEquals(events.map((e) => dec.decode(e.kv.value)), written.map((_, i) => `v${i}`));
  },
});

/**
 * A watch served by follower `victim` while `fault` makes it stop answering (SIGSTOP) or
 * leaves it cut off from its peers: the watcher moves to another node and gets every
 * event written meanwhile, in order, exactly once. Returns with the fault still on.
 */
async function watchThroughFault(
  cluster: TestCluster,
  fault: (victim: string) => Promise<void>,
): Promise<void> {
  const leader = await cluster.waitForLeader();
  const victim = ["n1", "n2", "n3"].find((id) => id !== leader)!;
  const others = ["n1", "n2", "n3"].filter((id) => id !== victim);
  const writer = cluster.client(others, 8_000);
  const watcherClient = cluster.client([victim, ...others], 8_000);
  const ac = new AbortController();
  const written = [(await writer.put("f:0", "v0")).version];
  const stream = watcherClient.watch({ prefix: "f:", startVersion: written[0], signal: ac.signal });
  try {
    assertEquals((await nextWithin(stream, 5_000)).version, written[0]);
    await fault(victim);
    for (let i = 1; i <= 5; i++) written.push((await writer.put(`f:${i}`, `v${i}`)).version);
    const later: number[] = [];
    for (let i = 1; i <= 5; i++) later.push((await nextWithin(stream, 15_000)).version);
    assertEquals(later, written.slice(1));
  } finally {
    ac.abort();
  }
}

Deno.test({
  name: "watch: a watch on a node that stops answering (SIGSTOP) moves to another node",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using cluster = await TestCluster.start(3);
    let stopped: string | undefined;
    try {
      await watchThroughFault(cluster, async (victim) => {
        stopped = victim;
        await cluster.node(victim).signal("SIGSTOP");
      });
    } finally {
      if (stopped) await cluster.node(stopped).signal("SIGCONT");
    }
  },
});

Deno.test({
  name: "watch: a node cut off from its peers ends its watches, which resume on another node",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using cluster = await TestCluster.start(3, { proxies: true });
    await watchThroughFault(cluster, (victim) => {
      cluster.mesh!.isolate(victim);
      return Promise.resolve();
    });
  },
});

Deno.test({
  name: "TTL: keys written before every node restarted still expire",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using cluster = await TestCluster.start(3);
    await cluster.waitForLeader();
    const client = cluster.client(undefined, 8_000);
    await client.put("t:short", "gone soon", { ttlSecs: 2 });
    await client.put("t:long", "stays", { ttlSecs: 3_600 });
    const before = await client.put("t:plain", "stays");
    // kill -9 of every node: the expiry queue lives in memory and is rebuilt from the store.
    for (const n of cluster.nodes) await n.kill();
    for (const n of cluster.nodes) await n.start();
    await cluster.waitForLeader();
    const ac = new AbortController();
    const events = await collect(
      client.watch({ prefix: "t:", startVersion: before.version + 1, signal: ac.signal }),
      1,
    );
    ac.abort();
    assertEquals(events.map(describe), [`delete t:short=@${before.version + 1}`]);
    assertEquals(dec.decode((await client.get("t:long"))!.value), "stays");
    assertEquals(dec.decode((await client.get("t:plain"))!.value), "stays");
    // Log lines arrive through a pipe and may trail the state they report.
    for (const n of cluster.nodes) {
      await waitFor(
        `${n.id} to log its expiry queue loaded`,
        () => n.output.includes("loaded the expiry queue"),
        { timeoutMs: 10_000 },
      );
    }
  },
});

/**
 * A one-node cluster, a writer, and a watch on `prefix` (its own client) that has delivered
 * its first event, a put of `<prefix>0`; it opens from that write's version, so the event
 * comes from history whenever the watch reaches the node. Disposing stops it all.
 */
async function watchingOneNode(prefix: string) {
  const cluster = await TestCluster.start(1);
  const writer = cluster.client();
  const client = cluster.client();
  const stop = async () => {
    client.close();
    writer.close();
    await cluster[Symbol.asyncDispose]();
  };
  try {
    await cluster.waitForLeader();
    const { version } = await writer.put(`${prefix}0`, "x");
    const it = client.watch({ prefix, startVersion: version });
    const first = await nextWithin(it, 5_000);
    return { writer, client, it, first, [Symbol.asyncDispose]: stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

Deno.test({
  name: "watch: closing the client ends its open watches",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using w = await watchingOneNode("w:");
    assertEquals(describe(w.first), `put w:0=x@${w.first.version}`);
    // The consumer waits for the next event; closing the client ends the watch at once.
    const pending = w.it.next();
    w.client.close();
    const ended = await Promise.race([
      pending.then((r) => r.done === true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 3_000)),
    ]);
    assertTrue(ended, "the watch ended when its client closed");
  },
});

Deno.test({
  name: "watch: a consumer that stops reading for a while still gets every event once, in order",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using w = await watchingOneNode("s:");
    const { writer, it } = w;
    // 1,500 events arrive while nobody reads: the client pauses the stream past 1,024 queued.
    const n = 1_500;
    for (let i = 0; i < n; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, j) => writer.put(`s:${i + j + 1}`, "x".repeat(64))),
      );
    }
    const got = await collect(it, n);
    assertEquals(got.length, n);
    const keys = new Set(got.map((e) => dec.decode(e.kv.key)));
    assertEquals(keys.size, n, "each once");
    for (let i = 1; i < got.length; i++) {
      assertTrue(got[i].version > got[i - 1].version, "in order");
    }
  },
});
