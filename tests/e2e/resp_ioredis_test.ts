/**
 * The RESP listener through a real Redis client from npm (ioredis), the way
 * users will talk to it: connection setup (its ready check runs INFO), every
 * string, key and server command a client library sends, a pipeline of 1,000
 * commands, SET NX races between two clients decided once, TTL expiry, and
 * SCAN (ioredis' scanStream) returning every key exactly once while keys are
 * added — against the leader and a follower of a 3-node cluster.
 */
import { Redis } from "ioredis";
import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import { TestCluster } from "./cluster.ts";

Deno.test("RESP through ioredis on a 3-node cluster", async (t) => {
  await using cluster = await TestCluster.start(3, { extraArgs: ["--resp-addr", "127.0.0.1:0"] });
  const leaderId = await cluster.waitForLeader();
  const followerId = cluster.nodes.find((n) => n.id !== leaderId)!.id;
  const clients: Redis[] = [];
  const connect = async (id: string) => {
    const c = new Redis({
      host: "127.0.0.1",
      port: cluster.node(id).respPort!,
      lazyConnect: true,
      maxRetriesPerRequest: 3,
      retryStrategy: () => null, // a test fails instead of reconnecting forever
    });
    clients.push(c);
    await c.connect(); // includes ioredis' ready check (INFO)
    return c;
  };
  try {
    const leader = await connect(leaderId);
    const follower = await connect(followerId);

    await t.step("server commands a client library sends", async () => {
      assertEquals(await leader.ping(), "PONG");
      assertEquals(await leader.echo("hi"), "hi");
      assertEquals(await leader.select(0), "OK");
      assertEquals(await leader.client("SETNAME", "ioredis-test"), "OK");
      assertEquals(await leader.client("GETNAME"), "ioredis-test");
      assertTrue((await leader.info("replication")).includes("role:master"), "leader is master");
      assertTrue((await follower.info("replication")).includes("role:slave"), "follower is slave");
      assertEquals((await leader.role())[0], "master");
      assertEquals(typeof await leader.dbsize(), "number");
    });

    await t.step("strings: SET options, GETSET, MSET/MGET, counters, APPEND", async () => {
      for (const [name, c] of [["leader", leader], ["follower", follower]] as const) {
        const k = (s: string) => `io:${name}:${s}`;
        assertEquals(await c.set(k("a"), "1"), "OK");
        assertEquals(await c.get(k("a")), "1", `${name}: read your write`);
        assertEquals(await c.set(k("a"), "2", "XX"), "OK");
        assertEquals(await c.set(k("a"), "3", "NX"), null);
        assertEquals(await c.set(k("a"), "4", "GET"), "2");
        assertEquals(await c.getset(k("a"), "5"), "4");
        assertEquals(await c.setnx(k("a"), "6"), 0);
        assertEquals(await c.setnx(k("b"), "6"), 1);
        assertEquals(await c.mset(k("m1"), "x", k("m2"), "y"), "OK");
        assertEquals(await c.mget(k("m1"), k("m2"), k("none")), ["x", "y", null]);
        assertEquals(await c.incr(k("n")), 1);
        assertEquals(await c.incrby(k("n"), 10), 11);
        assertEquals(await c.decr(k("n")), 10);
        assertEquals(await c.decrby(k("n"), 4), 6);
        assertEquals(await c.append(k("s"), "ab"), 2);
        assertEquals(await c.append(k("s"), "cd"), 4);
        assertEquals(await c.strlen(k("s")), 4);
        assertEquals(await c.exists(k("a"), k("b"), k("none")), 2);
        assertEquals(await c.del(k("a")), 1);
        assertEquals(await c.unlink(k("b")), 1);
        assertEquals(await c.get(k("a")), null);
        // Errors come back as Redis errors, not broken connections.
        const wrong = await c.incr(k("s")).then(() => "no error", (e: Error) => e.message);
        assertTrue(wrong.startsWith("ERR value is not an integer"), wrong);
        // The client's own helpers for the newer string commands.
        assertEquals(await c.setex(k("e"), 100, "v"), "OK");
        assertEquals(await c.getdel(k("e")), "v");
        assertEquals(await c.incrbyfloat(k("f"), "1.25"), "1.25");
        assertEquals(await c.incrbyfloat(k("f"), "0.75"), "2");
        assertEquals(await c.getrange(k("s"), 1, 2), "bc");
        assertEquals(await c.setrange(k("s"), 2, "XY"), 4);
        assertEquals(await c.get(k("s")), "abXY");
        assertEquals(await c.type(k("s")), "string");
        // A MULTI/EXEC transaction through the client's own API.
        assertEquals(await c.multi().set(k("t"), "1").incr(k("t")).get(k("t")).exec(), [
          [null, "OK"],
          [null, 2],
          [null, "2"],
        ]);
      }
    });

    await t.step("TTLs: EX/PX, EXPIRE, PERSIST, TTL/PTTL, and expiry", async () => {
      assertEquals(await leader.set("io:ttl:a", "v", "EX", 100), "OK");
      const ttl = await leader.ttl("io:ttl:a");
      assertTrue(ttl > 90 && ttl <= 100, `TTL ${ttl}`);
      assertEquals(await leader.persist("io:ttl:a"), 1);
      assertEquals(await leader.ttl("io:ttl:a"), -1);
      assertEquals(await leader.expire("io:ttl:a", 50), 1);
      assertEquals(await leader.set("io:ttl:a", "w", "KEEPTTL"), "OK");
      assertTrue(await leader.pttl("io:ttl:a") > 40_000, "KEEPTTL kept it");
      assertEquals(await leader.ttl("io:ttl:none"), -2);
      assertEquals(await follower.set("io:ttl:b", "v", "PX", 300), "OK");
      assertEquals(await leader.get("io:ttl:b"), "v");
      const deadline = Date.now() + 5_000;
      while (await leader.get("io:ttl:b") !== null && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assertEquals(await leader.get("io:ttl:b"), null, "expired");
      assertEquals(await follower.exists("io:ttl:b"), 0);
    });

    await t.step("a pipeline of 1,000 commands is answered in order", async () => {
      const p = follower.pipeline();
      for (let i = 0; i < 1000; i++) {
        if (i % 4 === 0) p.set(`io:pipe:${i}`, `v${i}`);
        else if (i % 4 === 1) p.get(`io:pipe:${i - 1}`);
        else if (i % 4 === 2) p.incr("io:pipe:n");
        else p.echo(`e${i}`);
      }
      const replies = (await p.exec())!;
      assertEquals(replies.length, 1000);
      for (let i = 0; i < 1000; i++) {
        const [err, value] = replies[i];
        assertEquals(err, null, `reply ${i}`);
        const want = i % 4 === 0
          ? "OK"
          : i % 4 === 1
          ? `v${i - 1}`
          : i % 4 === 2
          ? Math.floor(i / 4) + 1
          : `e${i}`;
        assertEquals(value, want, `reply ${i}`);
      }
      assertEquals(await leader.get("io:pipe:n"), "250");
    });

    await t.step("SET NX races between two clients are decided once per key", async () => {
      const other = await connect(followerId);
      const keys = Array.from({ length: 200 }, (_, i) => `io:race:${i}`);
      const [a, b] = await Promise.all([
        Promise.all(keys.map((k) => leader.set(k, "a", "NX"))),
        Promise.all(keys.map((k) => other.set(k, "b", "NX"))),
      ]);
      for (let i = 0; i < keys.length; i++) {
        assertTrue((a[i] === "OK") !== (b[i] === "OK"), `exactly one winner for ${keys[i]}`);
        assertEquals(await leader.get(keys[i]), a[i] === "OK" ? "a" : "b");
      }
    });

    await t.step("SCAN returns every key exactly once while keys are added", async () => {
      const present = Array.from(
        { length: 600 },
        (_, i) => `io:scan:${String(i).padStart(4, "0")}`,
      );
      const p = leader.pipeline();
      for (const k of present) p.set(k, "1");
      await p.exec();
      const seen = new Map<string, number>();
      let added = 0;
      const stream = follower.scanStream({ match: "io:scan:*", count: 50 });
      for await (const batch of stream as AsyncIterable<string[]>) {
        for (const k of batch) seen.set(k, (seen.get(k) ?? 0) + 1);
        // Keys added while the scan runs may or may not be seen, but never twice.
        await leader.set(`io:scan:added:${added++}`, "1");
      }
      for (const k of present) assertEquals(seen.get(k), 1, `${k} seen once`);
      for (const [k, n] of seen) assertEquals(n, 1, `${k} seen once`);
      assertTrue(added > 5, `the scan took ${added} pages`);
    });

    await t.step(
      "VGET reads a past version; WAIT counts the replicas that have a write",
      async () => {
        await leader.set("io:v", "old");
        const version = (await cluster.client().get("io:v"))!.version;
        await leader.set("io:v", "new");
        assertEquals(await leader.call("VGET", "io:v", String(version)), "old");
        assertEquals(await leader.get("io:v"), "new");
        const replicas = await leader.call("WAIT", "2", "2000") as number;
        assertEquals(replicas, 2, "both followers hold the write");
        const onFollower = await follower.call("WAIT", "1", "100").then(
          () => "no error",
          (e: Error) => e.message,
        );
        assertTrue(onFollower.includes("cannot be used with replica"), onFollower);
      },
    );
  } finally {
    for (const c of clients) c.disconnect();
  }
});
