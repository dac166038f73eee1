/**
 * The RESP listener against a real 3-node cluster (issue "RESP fast path"):
 * every implemented command's reply, a pipeline of 1,000 commands answered
 * in order, NX and INCR races decided once, TTL expiry, SCAN visiting every
 * key exactly once while keys are added, writes on the leader readable on
 * followers with linearizable reads, writes sent to a follower forwarded
 * and applied once, protocol errors that close only the offending
 * connection, MULTI/EXEC transactions that stay atomic through a kill -9 of
 * the leader. Uses the minimal client in tests/resp/resp_client.ts.
 */
import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import { TestCluster } from "./cluster.ts";
import { type Reply, RespTestClient } from "../resp/resp_client.ts";

function isError(r: Reply, pattern: RegExp): boolean {
  return typeof r === "object" && r !== null && "error" in r && pattern.test(r.error);
}

Deno.test("RESP listener on a 3-node cluster", async (t) => {
  // Port 0: each node binds a free port and logs it (no probe-then-bind race).
  await using cluster = await TestCluster.start(3, { extraArgs: ["--resp-addr", "127.0.0.1:0"] });
  const respPorts = new Map(cluster.nodes.map((n) => [n.id, n.respPort!]));
  let leaderId = await cluster.waitForLeader();
  let followerIds = cluster.nodes.map((n) => n.id).filter((id) => id !== leaderId);
  const clients: RespTestClient[] = [];
  const connect = async (id: string) => {
    const c = await RespTestClient.connect(`127.0.0.1:${respPorts.get(id)}`);
    clients.push(c);
    return c;
  };
  try {
    let leader = await connect(leaderId);
    let follower = await connect(followerIds[0]);
    /**
     * Re-resolves the roles before a step: on 2 busy cores an event-loop stall can move
     * leadership, and steps that assert leader-only behaviour must talk to the current one.
     */
    const refresh = async () => {
      const id = await cluster.waitForLeader(15_000);
      if (id === leaderId) return;
      leaderId = id;
      followerIds = cluster.nodes.map((n) => n.id).filter((x) => x !== id);
      leader = await connect(leaderId);
      follower = await connect(followerIds[0]);
    };

    await t.step("connection and server commands", async () => {
      await refresh();
      assertEquals(await leader.call("PING"), "PONG");
      assertEquals(await leader.call("PING", "hi"), "hi");
      assertEquals(await leader.call("ECHO", "a\r\nb"), "a\r\nb");
      assertEquals(await leader.call("SELECT", "0"), "OK");
      assertTrue(isError(await leader.call("SELECT", "1"), /^ERR DB index/), "SELECT 1");
      const hello = await leader.call("HELLO", "2") as Reply[];
      assertEquals(hello.slice(0, 6), ["server", "redis", "version", "7.0.0", "proto", 2]);
      assertEquals(hello[11], "master");
      assertTrue(isError(await leader.call("HELLO", "3"), /^NOPROTO/), "HELLO 3");
      assertTrue(
        isError(await leader.call("HELLO", "4"), /^NOPROTO unsupported protocol version$/),
        "HELLO 4",
      );
      assertEquals(await leader.call("CLIENT", "GETNAME"), null);
      assertEquals(await leader.call("CLIENT", "SETNAME", "tester"), "OK");
      assertEquals(await leader.call("CLIENT", "GETNAME"), "tester");
      assertEquals(typeof await leader.call("CLIENT", "ID"), "number");
      const clientList = await leader.call("CLIENT", "LIST") as string;
      assertTrue(
        /^id=\d+ addr=\S+ name=tester age=\d+ idle=\d+ .*cmd=client/m.test(clientList),
        clientList,
      );
      assertTrue(
        isError(
          await leader.call("CLIENT", "SETNAME"),
          /^ERR wrong number of arguments for 'client\|setname' command$/,
        ),
        "CLIENT SETNAME arity",
      );
      assertTrue(((await leader.call("CLIENT", "HELP")) as string[])[0].startsWith("CLIENT <"));
      assertEquals(await leader.call("CLIENT", "SETINFO", "lib-name", "tests"), "OK");
      assertTrue(
        isError(await leader.call("CLIENT", "SETINFO", "colour", "x"), /Unrecognized option/),
        "SETINFO attr",
      );
      assertTrue((await leader.call("COMMAND", "LIST") as string[]).includes("get"));
      assertEquals(await leader.call("COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"), ["a", "b"]);
      assertTrue(isError(await leader.call("COMMAND", "GETKEYS", "PING"), /no key/), "GETKEYS");
      // No passwords: the default user opens with any, every other user is refused.
      assertTrue(isError(await leader.call("AUTH", "pw"), /^ERR AUTH <password> called/), "AUTH");
      assertEquals(await leader.call("AUTH", "default", "pw"), "OK");
      assertTrue(isError(await leader.call("AUTH", "bob", "pw"), /^WRONGPASS/), "AUTH bob");
      assertTrue(
        isError(await leader.call("HELLO", "2", "AUTH", "bob", "pw"), /^WRONGPASS/),
        "HELLO AUTH bob",
      );
      assertEquals(
        (await leader.call("HELLO", "2", "AUTH", "default", "pw") as Reply[])[0],
        "server",
      );
      const count = await leader.call("COMMAND", "COUNT") as number;
      assertTrue(count >= 35, `COMMAND COUNT ${count}`);
      assertEquals(await leader.call("COMMAND", "DOCS"), []);
      const infoGet = await leader.call("COMMAND", "INFO", "get") as Reply[][];
      assertEquals(infoGet[0].slice(0, 2), ["get", 2]);
      assertEquals((await leader.call("COMMAND") as Reply[]).length, count);
      const info = await leader.call("INFO") as string;
      assertTrue(info.includes("# Server") && info.includes("role:master"), info);
      assertTrue(info.includes(`leader_id:${leaderId}`), info);
      // Clients, Memory and Stats: the fields monitoring tools read, moving with the traffic.
      const field = (text: string, name: string) =>
        Number(new RegExp(`^${name}:(\\d+)\r$`, "m").exec(text)?.[1]);
      assertTrue(info.includes("# Clients") && info.includes("# Memory"), info);
      assertTrue(field(info, "connected_clients") >= 1, info);
      assertTrue(field(info, "used_memory_rss") > 1_000_000, info);
      const stats = await leader.call("INFO", "stats") as string;
      assertTrue(stats.startsWith("# Stats\r\n") && !stats.includes("# Server"), stats);
      const echoed = "x".repeat(10_000);
      assertEquals(await leader.call("ECHO", echoed), echoed);
      const later = await leader.call("INFO", "stats") as string;
      assertEquals(
        field(later, "total_commands_processed") - field(stats, "total_commands_processed"),
        2,
        `ECHO and INFO counted: ${stats} / ${later}`,
      );
      assertTrue(
        field(later, "total_net_input_bytes") - field(stats, "total_net_input_bytes") > 10_000,
        later,
      );
      assertTrue(
        field(later, "total_net_output_bytes") - field(stats, "total_net_output_bytes") > 10_000,
        later,
      );
      // Error replies are counted, also those inside EXEC (what a benchmark's bad rows show).
      assertEquals(await leader.call("NOSUCH"), {
        error: "ERR unknown command 'NOSUCH', with args beginning with: ",
      });
      assertEquals(await leader.call("MULTI"), "OK");
      assertEquals(await leader.call("INCR", "stats:text"), "QUEUED");
      assertEquals(await leader.call("SET", "stats:text", "x"), "QUEUED");
      assertEquals(await leader.call("INCR", "stats:text"), "QUEUED");
      const exec = await leader.call("EXEC") as Reply[];
      assertEquals(
        exec.filter((r) => typeof r === "object" && r !== null && "error" in r).length,
        1,
      );
      const errorsAfter = await leader.call("INFO", "stats") as string;
      assertEquals(
        field(errorsAfter, "total_error_replies") - field(later, "total_error_replies"),
        2,
        errorsAfter,
      );
      const finfo = await follower.call("INFO", "replication") as string;
      assertTrue(finfo.includes("role:slave") && !finfo.includes("# Server"), finfo);
      // ROLE and INFO name the members' RESP ports (clients connect to them), never Raft's.
      const leaderRole = await leader.call("ROLE") as Reply[];
      assertEquals(leaderRole[0], "master");
      const replicaPorts = (leaderRole[2] as string[][]).map((r) => Number(r[1])).sort();
      assertEquals(replicaPorts, followerIds.map((id) => respPorts.get(id)!).sort(), "replicas");
      const followerRole = await follower.call("ROLE") as Reply[];
      assertEquals(followerRole.slice(0, 4), [
        "slave",
        "127.0.0.1",
        respPorts.get(leaderId)!,
        "connected",
      ]);
      const replication = await leader.call("INFO", "replication") as string;
      assertTrue(
        replication.includes(`ip=127.0.0.1,port=${respPorts.get(followerIds[0])},state=online`),
        replication,
      );
      const followerReplication = await follower.call("INFO", "replication") as string;
      assertTrue(
        followerReplication.includes(`master_port:${respPorts.get(leaderId)}\r\n`),
        followerReplication,
      );
      assertTrue(
        isError(
          await leader.call("NOPE", "a", "b"),
          /^ERR unknown command 'NOPE', with args beginning with: 'a' 'b' $/,
        ),
        "unknown",
      );
      assertTrue(
        isError(await leader.call("GET"), /^ERR wrong number of arguments for 'get' command$/),
        "arity",
      );
      assertEquals(await leader.call("READONLY"), "OK");
      assertEquals(await leader.call("READWRITE"), "OK");
      assertEquals(await leader.call("INFO", "nosuchsection"), "");
      const notInteger = /^ERR value is not an integer or out of range$/;
      assertTrue(isError(await leader.call("SELECT", "abc"), notInteger), "SELECT abc");
      assertTrue(isError(await leader.call("SELECT", "00"), notInteger), "SELECT 00");
    });

    await t.step("string commands", async () => {
      await refresh();
      assertEquals(await leader.call("SET", "s:a", "1"), "OK");
      assertEquals(await leader.call("GET", "s:a"), "1");
      assertEquals(await leader.call("GET", "s:missing"), null);
      assertEquals(await leader.call("SET", "s:a", "2", "NX"), null);
      assertEquals(await leader.call("SET", "s:b", "2", "XX"), null);
      assertEquals(await leader.call("SET", "s:a", "3", "XX"), "OK");
      assertEquals(await leader.call("SET", "s:a", "4", "GET"), "3");
      assertEquals(await leader.call("SET", "s:new", "x", "NX", "GET"), null);
      assertEquals(await leader.call("GET", "s:new"), "x");
      assertTrue(
        isError(await leader.call("SET", "s:a", "1", "NX", "XX"), /syntax error/),
        "NX XX",
      );
      assertTrue(
        isError(await leader.call("SET", "s:a", "1", "EX", "0"), /invalid expire/),
        "EX 0",
      );
      // Options may repeat (the last expiry wins); only conflicting ones are an error.
      assertEquals(await leader.call("SET", "s:r", "1", "NX", "NX", "GET", "GET"), null);
      assertEquals(await leader.call("SET", "s:r", "2", "EX", "0", "EX", "100"), "OK");
      const ttlR = await leader.call("TTL", "s:r") as number;
      assertTrue(ttlR > 95 && ttlR <= 100, `the last EX wins: TTL ${ttlR}`);
      for (const bad of [["EX", "10", "PX", "100"], ["KEEPTTL", "EX", "10"], ["XX", "NX"]]) {
        assertTrue(isError(await leader.call("SET", "s:r", "3", ...bad), /syntax error/), `${bad}`);
      }
      for (const unit of ["EX", "PX"]) {
        assertTrue(
          isError(
            await leader.call("SET", "s:r", "4", unit, "9223372036854775807"),
            /^ERR invalid expire time in 'set' command$/,
          ),
          `${unit} past any clock`,
        );
      }
      for (const n of ["010", "-0", "+5", "1.5", "99999999999999999999"]) {
        assertTrue(
          isError(await leader.call("SET", "s:r", "4", "EX", n), /not an integer/),
          `EX ${n}`,
        );
      }
      assertEquals(await leader.call("SETNX", "s:a", "9"), 0);
      assertEquals(await leader.call("SETNX", "s:c", "9"), 1);
      assertEquals(await leader.call("GETSET", "s:c", "10"), "9");
      assertEquals(await leader.call("GETSET", "s:d", "1"), null);
      assertEquals(await leader.call("MSET", "m:1", "a", "m:2", "b"), "OK");
      assertEquals(await leader.call("MGET", "m:1", "m:x", "m:2"), ["a", null, "b"]);
      assertTrue(isError(await leader.call("MSET", "m:1"), /wrong number/), "MSET arity");
      assertEquals(await leader.call("INCR", "n"), 1);
      assertEquals(await leader.call("INCRBY", "n", "41"), 42);
      assertEquals(await leader.call("DECR", "n"), 41);
      assertEquals(await leader.call("DECRBY", "n", "50"), -9);
      assertTrue(isError(await leader.call("INCR", "s:new"), /not an integer/), "INCR text");
      assertEquals(await leader.call("SET", "big", "9223372036854775807"), "OK");
      assertTrue(isError(await leader.call("INCR", "big"), /overflow/), "overflow");
      assertTrue(
        isError(
          await leader.call("DECRBY", "n", "-9223372036854775808"),
          /^ERR decrement would overflow$/,
        ),
        "DECRBY int64 min",
      );
      assertEquals(await leader.call("APPEND", "ap", "foo"), 3);
      assertEquals(await leader.call("APPEND", "ap", "bar"), 6);
      assertEquals(await leader.call("GET", "ap"), "foobar");
      assertEquals(await leader.call("STRLEN", "ap"), 6);
      assertEquals(await leader.call("STRLEN", "nokey"), 0);
      assertTrue(isError(await leader.call("SET", "\0sys", "x"), /^ERR .*reserved/), "reserved");
      // Indexes past 2^53 are compared exactly (rounded, these two were equal).
      assertEquals(
        await leader.call("GETRANGE", "ap", "-9223372036854775807", "-9223372036854775808"),
        "",
      );
      // INCRBYFLOAT reads numbers as strtold does: any exponent length; an underflow to zero
      // is not a valid float; the stored value is judged before the increment.
      assertEquals(await leader.call("INCRBYFLOAT", "fl:a", "1e000001"), "10");
      assertTrue(
        isError(
          await leader.call("INCRBYFLOAT", "fl:b", "1e-5000"),
          /^ERR value is not a valid float$/,
        ),
        "underflow",
      );
      assertEquals(await leader.call("EXISTS", "fl:b"), 0);
      for (
        const huge of [
          "1e-18446744073709551615",
          "2.5e18446744073709551616",
          "1.8e-4951",
          // Just below 2^-16446 (half the smallest subnormal): strtold rounds it to zero.
          "1.8225997659412373012642029668097099081995254078467816718604902e-4951",
          // Above the largest long double plus half an ulp (1.18973149535723176505e4932).
          "1.18973149535723176506e4932",
        ]
      ) {
        assertTrue(
          isError(
            await leader.call("INCRBYFLOAT", "fl:b", huge),
            /^ERR value is not a valid float$/,
          ),
          huge,
        );
      }
      // The largest long double's range is accepted, to its end.
      assertEquals(
        ((await leader.call("INCRBYFLOAT", "fl:c", "1.1897e4932")) as string).length,
        4933,
      );
      assertEquals(
        ((await leader.call("INCRBYFLOAT", "fl:d", "1.18973149535723176504e4932")) as string)
          .length,
        4933,
        "rounds to the largest long double",
      );
      assertTrue(
        isError(await leader.call("INCRBYFLOAT", "ap", "-inf"), /^ERR value is not a valid float$/),
        "the stored value first",
      );
    });

    await t.step("VGET reads a key as of a past version", async () => {
      await refresh();
      assertEquals(await leader.call("SET", "v:k", "old"), "OK");
      const info = await leader.call("INFO", "replication") as string;
      const revision = Number(/revision:(\d+)/.exec(info)![1]);
      assertEquals(await leader.call("SET", "v:k", "new"), "OK");
      assertEquals(await leader.call("VGET", "v:k", String(revision)), "old");
      assertEquals(await leader.call("GET", "v:k"), "new");
      assertTrue(isError(await leader.call("VGET", "v:k", "999999999"), /newer/), "future");
    });

    await t.step("key commands and TTL expiry", async () => {
      await refresh();
      assertEquals(await leader.call("EXISTS", "s:a", "s:a", "nokey"), 2);
      assertEquals(await leader.call("DEL", "s:a", "nokey"), 1);
      assertEquals(await leader.call("UNLINK", "s:c"), 1);
      assertEquals(await leader.call("EXISTS", "s:a"), 0);
      // Keys no write can create (empty, or the system's 0x00 prefix) read as absent.
      const sys = new Uint8Array([0, 0x61]);
      assertEquals(await leader.call("SET", "s:b2", "b"), "OK");
      assertEquals(await leader.call("GET", ""), null);
      assertEquals(await leader.call("GET", sys), null);
      assertEquals(await leader.call("MGET", "s:b2", "", sys, "nokey"), ["b", null, null, null]);
      assertEquals(await leader.call("EXISTS", "", "s:b2", sys), 1);
      assertEquals(await leader.call("TTL", ""), -2);
      assertEquals(await leader.call("DEL", "", sys), 0);
      assertTrue(
        isError(await leader.call("SET", "", "x"), /^ERR key must not be empty/),
        "SET ''",
      );
      // DEL of many keys: one Raft entry per group of keys, repeats counted once.
      const many = Array.from({ length: 300 }, (_, i) => `del:${i}`);
      assertEquals(await leader.call("MSET", ...many.flatMap((k) => [k, "v"])), "OK");
      assertEquals(await leader.call("DEL", ...many, "del:0", "nokey"), 300);
      assertEquals(await leader.call("EXISTS", ...many), 0);
      // A multi-key DEL is atomic for readers: MGET (one revision) sees all or none.
      assertEquals(await leader.call("MSET", "at:1", "v", "at:2", "v", "at:3", "v"), "OK");
      const reader = await connect(leaderId);
      let deleting = true;
      const partial: Reply[] = [];
      const watching = (async () => {
        for (let i = 0; i < 2_000 && (deleting || i < 10); i++) {
          const got = await reader.call("MGET", "at:1", "at:2", "at:3") as Reply[];
          if (new Set(got).size !== 1) partial.push(got);
        }
      })();
      assertEquals(await leader.call("DEL", "at:1", "at:2", "at:3"), 3);
      deleting = false;
      await watching;
      assertEquals(partial, [], "MGET saw a DEL half done");
      assertEquals(await leader.call("TTL", "nokey"), -2);
      assertEquals(await leader.call("TTL", "ap"), -1);
      assertEquals(await leader.call("EXPIRE", "ap", "100"), 1);
      const ttl = await leader.call("TTL", "ap") as number;
      assertTrue(ttl > 95 && ttl <= 100, `TTL ${ttl}`);
      const keyspace = await leader.call("INFO", "keyspace") as string;
      const db0 = /db0:keys=(\d+),expires=(\d+),avg_ttl=(\d+)/.exec(keyspace);
      assertTrue(db0 !== null && Number(db0[2]) >= 1 && Number(db0[3]) > 0, keyspace);
      assertEquals(await leader.call("EXPIRE", "ap", "50", "GT"), 0);
      assertEquals(await leader.call("GET", "ap"), "foobar");
      // EXPIRE options as Redis 7: repeats allowed, XX with GT, NX alone, never GT with LT.
      assertEquals(await leader.call("EXPIRE", "ap", "200", "XX", "GT"), 1);
      assertEquals(await leader.call("EXPIRE", "ap", "300", "GT", "GT"), 1);
      assertEquals(await leader.call("EXPIRE", "ap", "100", "XX", "GT"), 0);
      assertTrue(
        isError(await leader.call("EXPIRE", "ap", "10", "NX", "GT"), /^ERR NX and XX, GT or LT/),
        "NX GT",
      );
      assertTrue(
        isError(await leader.call("EXPIRE", "ap", "10", "GT", "LT"), /^ERR GT and LT options/),
        "GT LT",
      );
      assertTrue(
        isError(
          await leader.call("EXPIRE", "ap", "10", "Gt", "bogus"),
          /^ERR Unsupported option bogus$/,
        ),
        "unsupported",
      );
      assertTrue(
        isError(
          await leader.call("EXPIRE", "ap", "-9223372036854775808"),
          /^ERR invalid expire time in 'expire' command$/,
        ),
        "EXPIRE of int64 min is an error, not a delete",
      );
      assertEquals(await leader.call("SET", "gone", "1"), "OK");
      assertEquals(await leader.call("EXPIRE", "gone", "-10000000000000"), 1, "far past");
      assertEquals(await leader.call("EXISTS", "gone"), 0);
      assertEquals(await leader.call("PERSIST", "ap"), 1);
      assertEquals(await leader.call("PERSIST", "ap"), 0);
      assertEquals(await leader.call("TTL", "ap"), -1);
      assertEquals(await leader.call("EXPIRE", "nokey", "10"), 0);
      assertEquals(await leader.call("SET", "t:1", "v", "PX", "400"), "OK");
      assertEquals(await leader.call("SET", "t:2", "v", "EX", "100"), "OK");
      assertEquals(await leader.call("PEXPIRE", "t:2", "300"), 1);
      const pttl = await leader.call("PTTL", "t:1") as number;
      assertTrue(pttl > 0 && pttl <= 400, `PTTL ${pttl}`);
      assertEquals(await leader.call("SET", "t:3", "v", "PXAT", String(Date.now() + 300)), "OK");
      assertEquals(await leader.call("SET", "t:3", "w", "KEEPTTL"), "OK");
      assertTrue((await leader.call("PTTL", "t:3") as number) > 0, "KEEPTTL kept the TTL");
      const deadline = Date.now() + 5_000;
      let left: Reply[] = [];
      while (Date.now() < deadline) {
        left = await leader.call("MGET", "t:1", "t:2", "t:3") as Reply[];
        if (left.every((v) => v === null)) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assertEquals(left, [null, null, null]);
      assertEquals(await leader.call("TTL", "t:1"), -2);
      assertEquals(await leader.call("EXISTS", "t:1", "t:2", "t:3"), 0);
      // As Redis: options are checked before the amount, and an amount whose milliseconds
      // leave the 64-bit range is an error that leaves the key alone.
      assertEquals(await leader.call("SET", "t:big", "x"), "OK");
      assertTrue(
        isError(await leader.call("EXPIRE", "t:big", "abc", "BOGUS"), /^ERR Unsupported option/),
        "options first",
      );
      assertTrue(
        isError(
          await leader.call("EXPIRE", "t:big", "-9223372036854776"),
          /^ERR invalid expire time in 'expire' command$/,
        ),
        "out of range",
      );
      assertEquals(await leader.call("EXISTS", "t:big"), 1);
      assertEquals(await leader.call("EXPIRE", "t:big", "-9223372036854775"), 1);
      assertEquals(await leader.call("EXISTS", "t:big"), 0);
    });

    await t.step(
      "SETEX, GETDEL, GETEX, INCRBYFLOAT, GETRANGE, SETRANGE, EXPIREAT, TYPE, TIME, RENAME, MSETNX",
      async () => {
        await refresh();
        const expectError = async (command: string[], pattern: RegExp) =>
          assertTrue(isError(await leader.call(...command), pattern), command.join(" "));
        // SETEX and PSETEX are SET with EX and PX.
        assertEquals(await leader.call("SETEX", "x:1", "100", "v"), "OK");
        const ttl1 = await leader.call("TTL", "x:1") as number;
        assertTrue(ttl1 > 95 && ttl1 <= 100, `SETEX TTL ${ttl1}`);
        assertEquals(await leader.call("PSETEX", "x:2", "100000", "w"), "OK");
        assertTrue((await leader.call("PTTL", "x:2") as number) > 95_000, "PSETEX PTTL");
        await expectError(
          ["SETEX", "x:1", "0", "v"],
          /^ERR invalid expire time in 'setex' command$/,
        );
        await expectError(
          ["PSETEX", "x:1", "-5", "v"],
          /^ERR invalid expire time in 'psetex' command$/,
        );
        await expectError(["SETEX", "x:1", "1.5", "v"], /^ERR value is not an integer/);
        await expectError(["SETEX", "x:1", "10"], /^ERR wrong number of arguments for 'setex'/);
        // GETDEL answers the value and deletes the key.
        assertEquals(await leader.call("GETDEL", "x:1"), "v");
        assertEquals(await leader.call("GETDEL", "x:1"), null);
        assertEquals(await leader.call("EXISTS", "x:1"), 0);
        // GETEX answers the value and sets (or clears) its expiry.
        assertEquals(await leader.call("SET", "x:3", "g"), "OK");
        assertEquals(await leader.call("GETEX", "x:3"), "g");
        assertEquals(await leader.call("TTL", "x:3"), -1);
        assertEquals(await leader.call("GETEX", "x:3", "EX", "100"), "g");
        const ttl3 = await leader.call("TTL", "x:3") as number;
        assertTrue(ttl3 > 95 && ttl3 <= 100, `GETEX EX: TTL ${ttl3}`);
        assertEquals(await leader.call("GETEX", "x:3", "PERSIST"), "g");
        assertEquals(await leader.call("TTL", "x:3"), -1);
        assertEquals(await leader.call("GETEX", "x:3", "PXAT", String(Date.now() + 100_000)), "g");
        assertTrue((await leader.call("PTTL", "x:3") as number) > 90_000, "GETEX PXAT");
        assertEquals(await leader.call("GETEX", "nokey", "EX", "10"), null);
        assertEquals(
          await leader.call("GETEX", "nokey", "EX", "0"),
          null,
          "checked only when found",
        );
        await expectError(["GETEX", "x:3", "EX", "10", "PX", "10"], /^ERR syntax error$/);
        // As Redis, one option may repeat: the last amount counts.
        assertEquals(await leader.call("GETEX", "x:3", "EX", "10", "EX", "200"), "g");
        const ttlLast = await leader.call("TTL", "x:3") as number;
        assertTrue(ttlLast > 190 && ttlLast <= 200, `GETEX EX EX: TTL ${ttlLast}`);
        assertEquals(await leader.call("GETEX", "x:3", "PERSIST", "PERSIST"), "g");
        assertEquals(await leader.call("TTL", "x:3"), -1);
        await expectError(["GETEX", "x:3", "BOGUS"], /^ERR syntax error$/);
        await expectError(["GETEX", "x:3", "EX", "0"], /^ERR invalid expire time in 'getex'/);
        assertEquals(await leader.call("GETEX", "x:3", "EXAT", "1"), "g");
        assertEquals(await leader.call("EXISTS", "x:3"), 0, "a deadline in the past deletes");
        // INCRBYFLOAT: decimal results as Redis prints them, the TTL kept.
        assertEquals(await leader.call("SET", "x:f", "10.50"), "OK");
        assertEquals(await leader.call("INCRBYFLOAT", "x:f", "0.1"), "10.6");
        assertEquals(await leader.call("INCRBYFLOAT", "x:f", "-5"), "5.6");
        assertEquals(await leader.call("SET", "x:g", "5.0e3"), "OK");
        assertEquals(await leader.call("INCRBYFLOAT", "x:g", "2.0e2"), "5200");
        assertEquals(await leader.call("INCRBYFLOAT", "x:h", "0.1"), "0.1");
        assertEquals(await leader.call("INCRBYFLOAT", "x:h", "0.2"), "0.3");
        assertEquals(await leader.call("INCRBYFLOAT", "x:h", "-0.3"), "0");
        await expectError(["INCRBYFLOAT", "x:f", "abc"], /^ERR value is not a valid float$/);
        await expectError(["INCRBYFLOAT", "x:f", " 1"], /^ERR value is not a valid float$/);
        await expectError(["INCRBYFLOAT", "x:f", "inf"], /^ERR increment would produce NaN/);
        assertEquals(await leader.call("SET", "x:t", "text"), "OK");
        await expectError(["INCRBYFLOAT", "x:t", "1"], /^ERR value is not a valid float$/);
        assertEquals(await leader.call("SET", "x:k", "1", "EX", "100"), "OK");
        assertEquals(await leader.call("INCRBYFLOAT", "x:k", "1.5"), "2.5");
        assertTrue((await leader.call("TTL", "x:k") as number) > 90, "INCRBYFLOAT keeps the TTL");
        // GETRANGE (and its old name SUBSTR) and SETRANGE, as in Redis's documentation.
        assertEquals(await leader.call("SET", "x:s", "This is a string"), "OK");
        const ranges: Array<[string, string, string]> = [
          ["0", "3", "This"],
          ["-3", "-1", "ing"],
          ["0", "-1", "This is a string"],
          ["10", "100", "string"],
          ["5", "3", ""],
          ["-1", "-5", ""],
        ];
        for (const [from, to, want] of ranges) {
          assertEquals(await leader.call("GETRANGE", "x:s", from, to), want, `${from} ${to}`);
        }
        assertEquals(await leader.call("SUBSTR", "x:s", "0", "3"), "This");
        assertEquals(await leader.call("GETRANGE", "nokey", "0", "10"), "");
        assertEquals(await leader.call("SET", "x:r", "Hello World"), "OK");
        assertEquals(await leader.call("SETRANGE", "x:r", "6", "Redis"), 11);
        assertEquals(await leader.call("GET", "x:r"), "Hello Redis");
        assertEquals(await leader.call("SETRANGE", "x:z", "6", "Redis"), 11);
        assertEquals(await leader.call("GET", "x:z"), "\0\0\0\0\0\0Redis");
        assertEquals(await leader.call("SETRANGE", "x:e", "10", ""), 0);
        assertEquals(await leader.call("EXISTS", "x:e"), 0, "an empty SETRANGE creates nothing");
        await expectError(["SETRANGE", "x:r", "-1", "a"], /^ERR offset is out of range$/);
        // EXPIREAT / PEXPIREAT take Unix times; EXPIRETIME / PEXPIRETIME report them.
        assertEquals(await leader.call("SET", "x:a", "v"), "OK");
        assertEquals(await leader.call("EXPIRETIME", "x:a"), -1);
        assertEquals(await leader.call("EXPIRETIME", "nokey"), -2);
        const at = Math.floor(Date.now() / 1000) + 100;
        assertEquals(await leader.call("EXPIREAT", "x:a", String(at)), 1);
        assertEquals(await leader.call("EXPIRETIME", "x:a"), at);
        assertEquals(await leader.call("PEXPIRETIME", "x:a"), at * 1000);
        assertEquals(await leader.call("EXPIREAT", "x:a", String(at - 50), "GT"), 0);
        assertEquals(await leader.call("PEXPIREAT", "x:a", String(at * 1000 + 500)), 1);
        assertEquals(await leader.call("PEXPIRETIME", "x:a"), at * 1000 + 500);
        assertEquals(
          await leader.call("EXPIRETIME", "x:a"),
          at + 1,
          "rounded to the nearest second",
        );
        assertEquals(await leader.call("EXPIREAT", "x:a", "1"), 1);
        assertEquals(await leader.call("EXISTS", "x:a"), 0, "EXPIREAT in the past deletes");
        assertEquals(await leader.call("EXPIREAT", "nokey", String(at)), 0);
        // TYPE, TOUCH, TIME.
        assertEquals(await leader.call("SET", "x:b", "v"), "OK");
        assertEquals(await leader.call("TYPE", "x:b"), "string");
        assertEquals(await leader.call("TYPE", "nokey"), "none");
        assertEquals(await leader.call("TOUCH", "x:b", "x:b", "nokey"), 2);
        const [seconds, micros] = (await leader.call("TIME") as string[]).map(Number);
        assertTrue(Math.abs(seconds - Date.now() / 1000) < 5, `TIME ${seconds}`);
        assertTrue(Number.isInteger(micros) && micros >= 0 && micros < 1e6, `TIME µs ${micros}`);
        // RENAME / RENAMENX move the value and its TTL in one transaction; MSETNX sets all or none.
        assertEquals(await leader.call("SET", "rn:a", "1", "EX", "100"), "OK");
        assertEquals(await leader.call("RENAME", "rn:a", "rn:b"), "OK");
        assertEquals(await leader.call("MGET", "rn:a", "rn:b"), [null, "1"]);
        assertTrue((await leader.call("TTL", "rn:b") as number) > 90, "RENAME keeps the TTL");
        await expectError(["RENAME", "rn:none", "rn:x"], /^ERR no such key$/);
        assertEquals(await leader.call("RENAME", "rn:b", "rn:b"), "OK");
        assertEquals(await leader.call("SET", "rn:c", "2"), "OK");
        assertEquals(await leader.call("RENAMENX", "rn:b", "rn:c"), 0);
        assertEquals(await leader.call("MGET", "rn:b", "rn:c"), ["1", "2"]);
        assertEquals(await leader.call("RENAMENX", "rn:b", "rn:d"), 1);
        assertEquals(await follower.call("RENAME", "rn:d", "rn:c"), "OK", "through a follower");
        assertEquals(await leader.call("MGET", "rn:b", "rn:c", "rn:d"), [null, "1", null]);
        assertEquals(await leader.call("MSETNX", "mn:a", "1", "mn:b", "2"), 1);
        assertEquals(await leader.call("MSETNX", "mn:b", "3", "mn:c", "4"), 0);
        assertEquals(await leader.call("MGET", "mn:a", "mn:b", "mn:c"), ["1", "2", null]);
        await expectError(
          ["MSETNX", "mn:y", "1", "mn:z"],
          /^ERR wrong number of arguments for 'msetnx'/,
        );
        // Two connections renaming one key away at once: exactly one of them moves it.
        assertEquals(await leader.call("SET", "rn:race", "v"), "OK");
        const other = await connect(followerIds[1]);
        const outcomes = await Promise.all([
          leader.call("RENAMENX", "rn:race", "rn:to1"),
          other.call("RENAMENX", "rn:race", "rn:to2"),
        ]);
        const moved = outcomes.filter((o) => o === 1).length;
        const gone = outcomes.filter((o) => isError(o, /^ERR no such key$/)).length;
        assertEquals([moved, gone], [1, 1], JSON.stringify(outcomes));
        assertEquals(
          (await leader.call("MGET", "rn:race", "rn:to1", "rn:to2") as Reply[]).filter((v) =>
            v === "v"
          ),
          ["v"],
        );

        // A follower relays them like any other write.
        assertEquals(await follower.call("SETEX", "x:f1", "100", "v"), "OK");
        assertEquals(await follower.call("GETDEL", "x:f1"), "v");
        assertEquals(await leader.call("EXISTS", "x:f1"), 0);
      },
    );

    await t.step("MULTI/EXEC is atomic and isolated; WATCH aborts on a change", async () => {
      await refresh();
      assertEquals(
        await leader.pipeline([["MULTI"], ["SET", "tx:a", "1"], ["INCR", "tx:a"], ["GET", "tx:a"], [
          "EXEC",
        ]]),
        ["OK", "QUEUED", "QUEUED", "QUEUED", ["OK", 2, "2"]],
      );
      // A write whose deadline has passed leaves the key absent for the commands after it.
      assertEquals(
        await leader.pipeline([["MULTI"], ["SET", "tx:p", "5", "PXAT", "1"], ["INCR", "tx:p"], [
          "TTL",
          "tx:p",
        ], ["EXEC"]]),
        ["OK", "QUEUED", "QUEUED", "QUEUED", ["OK", 1, -1]],
      );
      assertEquals(await leader.call("GET", "tx:p"), "1");
      // Each command sees the ones before it (a key deleted twice is counted once).
      assertEquals(
        await leader.pipeline([["MULTI"], ["SET", "tx:d", "1"], ["DEL", "tx:d", "tx:d"], ["EXEC"]]),
        ["OK", "QUEUED", "QUEUED", ["OK", 1]],
      );
      // A command refused when queued spoils the transaction; nothing of it applies.
      assertEquals(await leader.call("MULTI"), "OK");
      assertEquals(await leader.call("SET", "tx:b", "1"), "QUEUED");
      assertTrue(isError(await leader.call("NOSUCH"), /^ERR unknown command/), "unknown");
      assertTrue(isError(await leader.call("KEYS", "*"), /not allowed inside MULTI/), "KEYS");
      assertTrue(isError(await leader.call("EXEC"), /^EXECABORT/), "EXECABORT");
      assertEquals(await leader.call("EXISTS", "tx:b"), 0);
      // An error while running one command is its reply; the others apply.
      assertEquals(
        await leader.pipeline([["MULTI"], ["SET", "tx:s", "text"], ["INCR", "tx:s"], [
          "SET",
          "tx:c",
          "1",
        ], [
          "EXEC",
        ]]),
        ["OK", "QUEUED", "QUEUED", "QUEUED", [
          "OK",
          { error: "ERR value is not an integer or out of range" },
          "OK",
        ]],
      );
      assertEquals(await leader.call("GET", "tx:c"), "1");
      assertTrue(isError(await leader.call("EXEC"), /^ERR EXEC without MULTI$/), "EXEC alone");
      // WATCH: a change by another client between WATCH and EXEC makes EXEC answer nil.
      const other = await connect(followerIds[0]);
      assertEquals(await leader.call("WATCH", "tx:w"), "OK");
      assertEquals(await other.call("SET", "tx:w", "theirs"), "OK");
      assertEquals(
        await leader.pipeline([["MULTI"], ["SET", "tx:w", "mine"], ["EXEC"]]),
        ["OK", "QUEUED", null],
      );
      assertEquals(await leader.call("GET", "tx:w"), "theirs");
      assertEquals(await leader.call("WATCH", "tx:w"), "OK");
      assertEquals(
        await leader.pipeline([["MULTI"], ["SET", "tx:w", "mine"], ["EXEC"]]),
        ["OK", "QUEUED", ["OK"]],
      );
      // An UNWATCH queued after MULTI does not cancel the WATCH before it (as in Redis).
      assertEquals(await leader.call("WATCH", "tx:w"), "OK");
      assertEquals(await other.call("SET", "tx:w", "theirs again"), "OK");
      assertEquals(
        await leader.pipeline([["MULTI"], ["UNWATCH"], ["SET", "tx:u", "1"], ["EXEC"]]),
        ["OK", "QUEUED", "QUEUED", null],
      );
      assertEquals(await leader.call("EXISTS", "tx:u"), 0);
      // Keys no write can create read as absent inside a transaction too.
      assertEquals(
        await leader.pipeline([["MULTI"], ["GET", ""], ["SET", "tx:e", "1"], ["EXEC"]]),
        ["OK", "QUEUED", "QUEUED", [null, "OK"]],
      );
      // A malformed EXEC inside MULTI discards the transaction and ends it, as in Redis.
      assertEquals(await leader.call("MULTI"), "OK");
      assertEquals(await leader.call("SET", "tx:x", "1"), "QUEUED");
      assertTrue(
        isError(await leader.call("EXEC", "x"), /^EXECABORT .*wrong number of arguments/),
        "EXEC x",
      );
      assertTrue(isError(await leader.call("EXEC"), /^ERR EXEC without MULTI$/), "then no MULTI");
      assertEquals(await leader.call("EXISTS", "tx:x"), 0);
      // A WATCHed key absent at WATCH and at EXEC, but created and deleted in between, aborts.
      assertEquals(await leader.call("WATCH", "tx:gone"), "OK");
      assertEquals(await other.call("SET", "tx:gone", "briefly"), "OK");
      assertEquals(await other.call("DEL", "tx:gone"), 1);
      assertEquals(
        await leader.pipeline([["MULTI"], ["SET", "tx:g2", "1"], ["EXEC"]]),
        ["OK", "QUEUED", null],
      );
      assertEquals(await leader.call("WATCH", "tx:gone"), "OK");
      assertEquals(
        await leader.pipeline([["MULTI"], ["SET", "tx:g2", "1"], ["EXEC"]]),
        ["OK", "QUEUED", ["OK"]],
        "untouched, it commits",
      );
      // A key already expired at WATCH: the delete its expiry makes later is not a change.
      assertEquals(await leader.call("SET", "tx:exp", "v", "PX", "50"), "OK");
      for (let i = 0; i < 100 && await leader.call("EXISTS", "tx:exp") !== 0; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assertEquals(await leader.call("WATCH", "tx:exp"), "OK");
      await new Promise((r) => setTimeout(r, 300)); // its ExpireKey lands (rounds every 100 ms)
      assertEquals(
        await leader.pipeline([["MULTI"], ["SET", "tx:g3", "1"], ["EXEC"]]),
        ["OK", "QUEUED", ["OK"]],
        "an expiry is not a write",
      );
      // Transactions and MSETs too large for one Raft entry are refused; the cluster goes on.
      const many = Array.from({ length: 10_001 }, (_, i) => `tx:many:${i}`);
      const big = await leader.pipeline([["MULTI"], ["MGET", ...many], ["SET", "tx:m", "1"], [
        "EXEC",
      ]]);
      assertTrue(isError(big[3], /at most 10000 writes and conditions/), JSON.stringify(big[3]));
      const mib = "x".repeat(1 << 20);
      assertTrue(
        isError(await leader.call("MSET", "tx:b1", mib, "tx:b2", mib), /at most \d+ bytes/),
        "MSET of 2 MiB",
      );
      assertEquals(await follower.call("SET", "tx:alive", "yes"), "OK");
      assertEquals(await leader.call("MGET", "tx:m", "tx:b1", "tx:alive"), [null, null, "yes"]);
      // Three connections (one per node) run INCR x; INCR y as transactions while a reader
      // watches: x and y move together, no increment is lost, each EXEC sees its own pair.
      const runners = await Promise.all(cluster.nodes.map((n) => connect(n.id)));
      const reader = await connect(followerIds[1]);
      let running = true;
      const torn: Reply[] = [];
      const reading = (async () => {
        for (let i = 0; i < 5_000 && running; i++) {
          const xy = await reader.call("MGET", "tx:x", "tx:y") as Reply[];
          if (xy[0] !== xy[1]) torn.push(xy);
        }
      })();
      const results = await Promise.all(runners.map(async (c) => {
        const pairs: Reply[] = [];
        for (let i = 0; i < 30; i++) {
          const r = await c.pipeline([["MULTI"], ["INCR", "tx:x"], ["INCR", "tx:y"], ["EXEC"]]);
          pairs.push(r[3]);
        }
        return pairs;
      }));
      running = false;
      await reading;
      assertEquals(torn, [], "a reader saw x and y apart");
      const pairs = results.flat() as number[][];
      assertTrue(pairs.every((p) => Array.isArray(p) && p[0] === p[1]), JSON.stringify(pairs));
      assertEquals(new Set(pairs.map((p) => p[0])).size, 90, "each EXEC got its own values");
      assertEquals(await leader.call("MGET", "tx:x", "tx:y"), ["90", "90"]);
    });

    await t.step("a pipeline of 1,000 commands is answered in order", async () => {
      await refresh();
      const commands = Array.from(
        { length: 1000 },
        (_, i) => i % 2 === 0 ? ["INCR", "pipe:n"] : ["ECHO", `e${i}`],
      );
      const replies = await leader.pipeline(commands);
      assertEquals(replies.length, 1000);
      for (let i = 0; i < 1000; i++) {
        assertEquals(replies[i], i % 2 === 0 ? i / 2 + 1 : `e${i}`, `reply ${i}`);
      }
    });

    await t.step(
      "pipelined writes and reads keep their order, on the leader and a follower",
      async () => {
        await refresh();
        for (const [name, client] of [["leader", leader], ["follower", follower]] as const) {
          const p = `order:${name}:`;
          const commands: string[][] = [];
          for (let i = 0; i < 500; i++) commands.push(["SET", `${p}k`, `v${i}`]);
          commands.push(["GET", `${p}k`]);
          for (let i = 0; i < 200; i++) {
            commands.push(["SET", `${p}${i}`, `a${i}`], ["GET", `${p}${i}`]);
          }
          // A blind SET, then compare-and-sets that must see it: NX fails, SETNX fails.
          commands.push(
            ["SET", `${p}nx`, "0"],
            ["SET", `${p}nx`, "1", "NX"],
            ["SETNX", `${p}nx`, "2"],
            ["DEL", `${p}nx`],
            ["SET", `${p}nx`, "3", "NX"],
            ["SET", `${p}nx`, "4"],
            ["GET", `${p}nx`],
          );
          const replies = await client.pipeline(commands);
          for (let i = 0; i < 500; i++) assertEquals(replies[i], "OK", `${name}: reply ${i}`);
          assertEquals(replies[500], "v499", name);
          for (let i = 0; i < 200; i++) {
            assertEquals(replies[501 + 2 * i], "OK");
            assertEquals(replies[502 + 2 * i], `a${i}`, `${name}: read after its write`);
          }
          assertEquals(replies.slice(901), ["OK", null, 0, 1, "OK", "OK", "4"], name);
          assertEquals(await leader.call("GET", `${p}k`), "v499");
        }
      },
    );

    await t.step(
      "a pipelined run of GETs answers each key in order, a bad key with its error",
      async () => {
        // Runs of plain GETs are looked up together (Memtable.getMany); one bad
        // key makes the run go one by one, so it gets its own error in place.
        await refresh();
        for (const [name, client] of [["leader", leader], ["follower", follower]] as const) {
          const p = `gets:${name}:`;
          await client.pipeline(Array.from({ length: 40 }, (_, i) => ["SET", `${p}${i}`, `g${i}`]));
          const keys = Array.from({ length: 60 }, (_, i) => `${p}${i}`); // 40..59 are absent
          const plain = await client.pipeline(keys.map((k) => ["GET", k]));
          assertEquals(plain, keys.map((_, i) => (i < 40 ? `g${i}` : null)), name);
          const mixed = await client.pipeline([
            ["GET", `${p}1`],
            ["GET", "k".repeat(4097)],
            ["GET", `${p}2`],
            ["GET", "\0sys"],
            ["GET", `${p}55`],
          ]);
          assertEquals([mixed[0], mixed[2], mixed[4]], ["g1", "g2", null], name);
          assertTrue(isError(mixed[1], /^ERR key is .* over/), `${name}: long key`);
          assertEquals(mixed[3], null, `${name}: a system key reads as absent`);
        }
      },
    );

    await t.step("large pipelined replies are flushed in parts and arrive whole", async () => {
      await refresh();
      const value = "v".repeat(64 * 1024);
      assertEquals(await leader.call("SET", "large:k", value), "OK");
      const replies = await leader.pipeline(
        Array.from(
          { length: 100 },
          (_, i) => i % 10 === 9 ? ["STRLEN", "large:k"] : ["GET", "large:k"],
        ),
      );
      for (let i = 0; i < 50; i++) {
        if (i % 10 === 9) assertEquals(replies[i], value.length);
        else assertTrue(replies[i] === value, `reply ${i}`);
      }
    });

    await t.step("SET NX races between two connections are decided once", async () => {
      await refresh();
      const a = await connect(leaderId);
      const b = await connect(followerIds[1]);
      const keys = Array.from({ length: 20 }, (_, i) => `race:${i}`);
      const [ra, rb] = await Promise.all([
        a.pipeline(keys.map((k) => ["SET", k, "a", "NX"])),
        b.pipeline(keys.map((k) => ["SET", k, "b", "NX"])),
      ]);
      for (let i = 0; i < keys.length; i++) {
        const winners = [ra[i], rb[i]].filter((r) => r === "OK").length;
        assertEquals(winners, 1, `${keys[i]}: ${JSON.stringify([ra[i], rb[i]])}`);
        assertEquals(await leader.call("GET", keys[i]), ra[i] === "OK" ? "a" : "b");
      }
      // INCR from two nodes at once: no lost update.
      await Promise.all([a, b].map(async (c) => {
        for (let i = 0; i < 25; i++) await c.call("INCR", "race:counter");
      }));
      assertEquals(await leader.call("GET", "race:counter"), "50");
      // Thirty connections on one hot key (a fifth through a follower): every INCR and
      // APPEND succeeds and none is lost (they used to give up after 32 lost races).
      const hot = await Promise.all(
        Array.from({ length: 30 }, (_, i) => connect(i % 5 === 0 ? followerIds[0] : leaderId)),
      );
      const replies = await Promise.all(hot.map(async (c) => {
        const got: Reply[] = [];
        for (let i = 0; i < 10; i++) {
          got.push(await c.call("INCR", "race:hot"), await c.call("APPEND", "race:log", "x"));
        }
        return got;
      }));
      const failures = replies.flat().filter((r) => typeof r !== "number");
      assertEquals(failures, [], "no read-modify-write gave up");
      assertEquals(await leader.call("GET", "race:hot"), "300");
      assertEquals(await leader.call("STRLEN", "race:log"), 300);
      for (const c of hot) c.close();
    });

    await t.step("SCAN visits every key exactly once while keys are added", async () => {
      await refresh();
      const pairs: string[] = [];
      for (let i = 0; i < 250; i++) pairs.push(`scan:${String(i).padStart(3, "0")}`, "v");
      assertEquals(await leader.call("MSET", ...pairs), "OK");
      const writer = await connect(leaderId);
      let adding = true;
      const added = (async () => {
        for (let i = 0; adding && i < 200; i++) await writer.call("SET", `scan:new:${i}`, "v");
      })();
      const seen = new Map<string, number>();
      let cursor = "0";
      let rounds = 0;
      do {
        const [next, keys] = await follower.call(
          "SCAN",
          cursor,
          "MATCH",
          "scan:[0-9]*",
          "COUNT",
          "17",
        ) as [string, string[]];
        for (const k of keys) seen.set(k, (seen.get(k) ?? 0) + 1);
        // Clients parse cursors as 64-bit integers (redis-cli --scan, go-redis, redis-rs).
        assertTrue(/^\d{1,19}$/.test(next) && BigInt(next) < 1n << 63n, `cursor ${next}`);
        cursor = next;
      } while (cursor !== "0" && ++rounds < 1_000);
      adding = false;
      await added;
      assertEquals(seen.size, 250);
      assertTrue([...seen.values()].every((n) => n === 1), "every key once");
      const all = await leader.call("KEYS", "scan:0*") as string[];
      assertEquals(all.length, 100);
      assertEquals(all[0], "scan:000");
      const dbsize = await leader.call("DBSIZE") as number;
      assertTrue(dbsize >= 250, `DBSIZE ${dbsize}`);
    });

    await t.step("a count of many keys lets other clients' commands through", async () => {
      // A walk over keys in memory never waits for I/O; it must still give the event loop
      // turns between its pages, or a DBSIZE holds the node long enough for an election.
      await refresh();
      const loader = await connect(leaderId);
      for (let first = 0; first < 100_000; first += 10_000) {
        const commands = Array.from({ length: 10 }, (_, m) => {
          const args = ["MSET"];
          for (let i = first + m * 1_000; i < first + (m + 1) * 1_000; i++) {
            args.push(`walk:${i}`, "v");
          }
          return args;
        });
        assertEquals(await loader.pipeline(commands), commands.map(() => "OK"));
      }
      const [counter, pinger] = [await connect(leaderId), await connect(leaderId)];
      const order: string[] = [];
      const counted = counter.call("DBSIZE").then((n) => {
        order.push("DBSIZE");
        return n;
      });
      await new Promise((r) => setTimeout(r, 5));
      const ponged = pinger.call("PING").then(() => order.push("PING"));
      const [n] = await Promise.all([counted, ponged]);
      assertTrue((n as number) >= 100_000, `DBSIZE ${n}`);
      assertEquals(order, ["PING", "DBSIZE"], "PING answered while DBSIZE walked the keys");
    });

    await t.step("writes on the leader are read linearizably on followers", async () => {
      await refresh();
      const f2 = await connect(followerIds[1]);
      for (let i = 0; i < 20; i++) {
        assertEquals(await leader.call("SET", "lin:k", `v${i}`), "OK");
        assertEquals(await f2.call("GET", "lin:k"), `v${i}`);
        assertEquals(await follower.call("GET", "lin:k"), `v${i}`);
      }
    });

    await t.step("a write sent to a follower is forwarded and lands once", async () => {
      await refresh();
      assertEquals(await follower.call("SET", "fw:k", "1"), "OK");
      assertEquals(await leader.call("GET", "fw:k"), "1");
      assertEquals(await follower.call("INCR", "fw:n"), 1);
      assertEquals(await follower.call("INCR", "fw:n"), 2);
      assertEquals(await leader.call("GET", "fw:n"), "2");
      assertEquals(await follower.call("SET", "fw:k", "2", "NX"), null);
      assertEquals(await follower.call("DEL", "fw:k"), 1);
      assertEquals(await leader.call("EXISTS", "fw:k"), 0);
      // A transaction and a millisecond expiry relayed from a follower keep their meaning.
      assertEquals(await follower.call("MSET", "fw:a", "1", "fw:b", "2"), "OK");
      assertEquals(await leader.call("MGET", "fw:a", "fw:b"), ["1", "2"]);
      assertEquals(await follower.call("SET", "fw:px", "x", "PX", "400"), "OK");
      const pttl = await leader.call("PTTL", "fw:px") as number;
      assertTrue(pttl > 0 && pttl <= 400, `PTTL ${pttl} keeps millisecond precision`);
      // Pipelined writes to a follower all land, each once, in order.
      const replies = await follower.pipeline(
        Array.from({ length: 200 }, () => ["INCR", "fw:counter"]),
      );
      assertEquals(replies, Array.from({ length: 200 }, (_, i) => i + 1));
      assertEquals(await leader.call("GET", "fw:counter"), "200");
    });

    await t.step("READONLY serves serializable reads", async () => {
      await refresh();
      const r = await connect(followerIds[0]);
      assertEquals(await r.call("READONLY"), "OK");
      assertEquals(await leader.call("SET", "ro:k", "x"), "OK");
      const deadline = Date.now() + 5_000;
      let v: Reply = null;
      while (Date.now() < deadline && (v = await r.call("GET", "ro:k")) !== "x") {
        await new Promise((res) => setTimeout(res, 20));
      }
      assertEquals(v, "x");
    });

    await t.step("a protocol error is answered and closes only that connection", async () => {
      await refresh();
      const bad = await connect(leaderId);
      await bad.writeRaw("PING\r\n*1\r\n$-5\r\n");
      assertEquals(await bad.read(), "PONG");
      assertTrue(isError(await bad.read(), /^ERR Protocol error: invalid bulk length/), "error");
      assertTrue(await bad.closedByServer(), "closed");
      const garbage = await connect(leaderId);
      await garbage.writeRaw("*2\r\n$3\r\nGET\r\n+nope\r\n");
      assertTrue(isError(await garbage.read(), /^ERR Protocol error: expected '\$'/), "garbage");
      assertTrue(await garbage.closedByServer(), "closed");
      const big = "x".repeat(1024 * 1024 + 1);
      assertTrue(
        isError(await leader.call("SET", "big:v", big), /^ERR value is .* over the limit/),
        "value",
      );
      assertTrue(
        isError(await leader.call("SET", "k".repeat(4097), "v"), /^ERR key is .* over/),
        "key",
      );
      const huge = await connect(leaderId);
      await huge.writeRaw(`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${2 * 1024 * 1024}\r\n`);
      assertTrue(isError(await huge.read(), /^ERR Protocol error: invalid bulk length/), "bulk");
      assertTrue(await huge.closedByServer(), "closed");
      const inline = await connect(leaderId);
      await inline.writeRaw('SET inline:k "a b"\r\nGET inline:k\r\n\r\nQUIT\r\n');
      assertEquals(await inline.read(), "OK");
      assertEquals(await inline.read(), "a b");
      assertEquals(await inline.read(), "OK");
      assertTrue(await inline.closedByServer(), "QUIT closes");
      assertEquals(await leader.call("PING"), "PONG");
    });

    await t.step("a linearizable GET on a paused old leader never returns stale data", async () => {
      await refresh();
      const old = await connect(leaderId);
      assertEquals(await old.call("SET", "pause:k", "before"), "OK");
      await cluster.node(leaderId).signal("SIGSTOP");
      try {
        const newLeader = await cluster.waitForLeader(15_000, followerIds);
        const fresh = await connect(newLeader);
        assertEquals(await fresh.call("SET", "pause:k", "after"), "OK");
        // Sent while the old leader is stopped: it is read when the process wakes up.
        await old.writeRaw("*2\r\n$3\r\nGET\r\n$7\r\npause:k\r\n");
      } finally {
        await cluster.node(leaderId).signal("SIGCONT");
      }
      const r = await old.read();
      assertTrue(
        r === "after" || isError(r, /^(ERR|CLUSTERDOWN)/),
        `stale read: ${JSON.stringify(r)}`,
      );
    });

    await t.step("a write acknowledged over RESP survives kill -9 of the leader", async () => {
      const current = await cluster.waitForLeader(15_000);
      const c = await connect(current);
      assertEquals(await c.call("SET", "durable:k", "kept"), "OK");
      assertEquals(await c.call("INCR", "durable:n"), 1);
      // A writer on a follower keeps going while the leader dies: its relayed
      // writes either fail or land, and every acknowledged one survives.
      const survivors = cluster.nodes.map((n) => n.id).filter((id) => id !== current);
      const viaFollower = await connect(survivors[0]);
      const acked: number[] = [];
      let failed = 0;
      let stop = false;
      const writer = (async () => {
        for (let i = 0; i < 2_000 && !stop; i++) {
          const r = await viaFollower.call("SET", `relay:${i}`, `v${i}`);
          if (r === "OK") acked.push(i);
          else failed++;
        }
      })();
      await new Promise((r) => setTimeout(r, 200));
      await cluster.node(current).kill();
      const next = await cluster.waitForLeader(15_000, survivors);
      await new Promise((r) => setTimeout(r, 300));
      stop = true;
      await writer;
      const d = await connect(next);
      assertEquals(await d.call("GET", "durable:k"), "kept");
      assertEquals(await d.call("GET", "durable:n"), "1");
      const other = await connect(survivors.find((id) => id !== next)!);
      assertEquals(await other.call("GET", "durable:k"), "kept");
      assertTrue(acked.length > 0, `the follower acknowledged writes (${failed} failed)`);
      const values = await d.call("MGET", ...acked.map((i) => `relay:${i}`)) as Reply[];
      const lost = acked.filter((i, n) => values[n] !== `v${i}`);
      assertEquals(lost, [], `acknowledged relayed writes lost (${acked.length} acked)`);
    });
  } finally {
    for (const c of clients) c.close();
  }
});

Deno.test("RESP: DBSIZE and INFO keyspace count at one revision while history is compacted under them", async () => {
  // Ten revisions of history, and a pause between the pages of a walk over the keys (as
  // when its pages are read from disk): the leader's retention round (every second)
  // compacts past a count's revision before the count reaches its last page.
  await using cluster = await TestCluster.start(3, {
    extraArgs: ["--resp-addr", "127.0.0.1:0", "--history-revisions", "10"],
    env: { RUSTKVD_FAILPOINTS: "walk-page-pause=100" },
  });
  const leaderId = await cluster.waitForLeader();
  const address = `127.0.0.1:${cluster.node(leaderId).respPort}`;
  const [loader, writer, counter] = await Promise.all(
    [0, 1, 2].map(() => RespTestClient.connect(address)),
  );
  const status = cluster.client([leaderId]);
  try {
    // Twenty pages of 2,000 keys: nineteen pauses, about 2 s per count.
    const keys = 40_000;
    for (let first = 0; first < keys; first += 10_000) {
      const commands = Array.from({ length: 10 }, (_, m) => {
        const args = ["MSET"];
        for (let i = first + m * 1_000; i < first + (m + 1) * 1_000; i++) args.push(`c:${i}`, "v");
        return args;
      });
      assertEquals(await loader.pipeline(commands), commands.map(() => "OK"));
    }
    // Overwrites only: the number of keys stays the same while revisions move on.
    let stop = false;
    const writes = (async () => {
      for (let round = 0; !stop && round < 100_000; round++) {
        const sets = Array.from(
          { length: 20 },
          (_, i) => ["SET", `c:${(round * 20 + i) % keys}`, "w"],
        );
        await writer.pipeline(sets);
      }
    })();
    try {
      for (const command of [["DBSIZE"], ["INFO", "keyspace"]]) {
        const before = (await status.status()).compactedRevision;
        const reply = await counter.call(...command);
        const after = (await status.status()).compactedRevision;
        const n = typeof reply === "string" ? Number(/keys=(\d+)/.exec(reply)?.[1]) : reply;
        assertEquals(n, keys, `${command.join(" ")}: ${JSON.stringify(reply)}`);
        assertTrue(
          after > before,
          `history was compacted during ${command[0]} (${before} -> ${after})`,
        );
      }
    } finally {
      stop = true;
      await writes;
    }
  } finally {
    for (const c of [loader, writer, counter]) c.close();
    status.close();
  }
});

Deno.test("RESP: MULTI/EXEC transfers keep their total through a kill -9 of the leader", async () => {
  await using cluster = await TestCluster.start(3, { extraArgs: ["--resp-addr", "127.0.0.1:0"] });
  const leader = await cluster.waitForLeader();
  const ports = new Map(cluster.nodes.map((n) => [n.id, n.respPort!]));
  const clients: RespTestClient[] = [];
  const connect = async (id: string) => {
    const c = await RespTestClient.connect(`127.0.0.1:${ports.get(id)}`, 10_000);
    clients.push(c);
    return c;
  };
  try {
    const accounts = Array.from({ length: 8 }, (_, i) => `acct:${i}`);
    const setup = await connect(leader);
    assertEquals(await setup.call("MSET", ...accounts.flatMap((a) => [a, "100"])), "OK");
    const survivors = cluster.nodes.map((n) => n.id).filter((id) => id !== leader);
    // Two transferring connections on each node that survives, one reading the total.
    let stop = false;
    const outcomes = { committed: 0, aborted: 0, failed: [] as Reply[] };
    const transfers = survivors.flatMap((id, n) =>
      [0, 1].map(async (w) => {
        const c = await connect(id);
        let seed = 2 * n + w + 1;
        const rnd = (k: number) => (seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff) % k;
        for (let i = 0; i < 5_000 && !stop; i++) {
          const [from, to] = [accounts[rnd(8)], accounts[rnd(8)]];
          if (rnd(2) === 0) await c.call("WATCH", from);
          const r = await c.pipeline([["MULTI"], ["DECRBY", from, "3"], ["INCRBY", to, "3"], [
            "EXEC",
          ]]);
          if (r[3] === null) outcomes.aborted++;
          else if (Array.isArray(r[3])) outcomes.committed++;
          // During the election a transaction may fail (no leader within its deadline): not applied.
          else outcomes.failed.push(r[3]);
        }
      })
    );
    const torn: number[] = [];
    const reader = (async () => {
      const c = await connect(survivors[1]);
      for (let i = 0; i < 20_000 && !stop; i++) {
        const values = await c.call("MGET", ...accounts);
        if (!Array.isArray(values)) continue; // no leader to confirm the read for a moment
        const total = values.reduce((s: number, v) => s + Number(v), 0);
        if (total !== 800) torn.push(total);
      }
    })();
    await new Promise((r) => setTimeout(r, 1_500));
    await cluster.node(leader).kill();
    await cluster.waitForLeader(15_000, survivors);
    await new Promise((r) => setTimeout(r, 1_500));
    stop = true;
    await Promise.all([...transfers, reader]);
    console.log(
      `transfers: ${outcomes.committed} committed, ${outcomes.aborted} aborted by WATCH, ` +
        `${outcomes.failed.length} failed during the election`,
    );
    assertEquals(torn, [], "a reader saw a transfer half done");
    assertTrue(outcomes.committed > 50, JSON.stringify(outcomes));
    const final = await (await connect(survivors[0])).call("MGET", ...accounts) as string[];
    assertEquals(final.reduce((s, v) => s + Number(v), 0), 800, JSON.stringify(outcomes));
  } finally {
    for (const c of clients) c.close();
  }
});
