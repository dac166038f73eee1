/**
 * `deno task compat`: sends the same commands to a real redis-server and to
 * one rustkvd node's RESP listener, one by one, and prints every reply that
 * differs. The differences we keep on purpose are listed below and reported
 * as such; any other one fails the run (exit code 1). Needs `redis-server`
 * on PATH (Debian: `apt-get install -y redis-server`); without it the run
 * says so and exits with code 2. Not part of `deno task test`: CI machines
 * have no redis-server.
 *
 * @module
 */

import { joinHostPort } from "../lib/common/host_port.ts";
import { type Reply, RespTestClient } from "../tests/resp/resp_client.ts";

/** Commands whose replies differ from Redis 7.0 on purpose, and why. */
const deliberate = new Map<string, string>([
  ["SELECT 1", "one database only"],
  ["READONLY", "serializable reads from this replica (Redis: cluster mode only)"],
  ["READWRITE", "linearizable reads again (Redis: cluster mode only)"],
  ["CONFIG SET a b", "nothing is configurable over RESP"],
  ["INCRBYFLOAT c:f 1e400", "exact decimal sum; Redis prints its long double's approximation"],
  ["INCRBYFLOAT c:f .5", "follows the 1e400 row"],
  ["INCRBYFLOAT c:l 123456789.123456789", "exact decimal sum (Redis: binary noise)"],
  ["INCRBYFLOAT c:l 0.000000001", "follows the row before"],
  ["INCRBYFLOAT c:m 0x10", "hexadecimal floats are refused"],
  ["SETRANGE c:big 600000000 x", "the size error names our limit in bytes"],
  ["SET  v", "keys are 1 to 4096 bytes"],
  ["SET \0k v", "keys starting with byte 0x00 are reserved for the system"],
  ["EXPIRE l:a 400000000", "a TTL is at most 10 years"],
  ["EXPIREAT l:a 9223372036854775", "a deadline is at most 2^53 ms (year 287,396)"],
  ["SCAN -1", "a cursor is one this node handed out (or 0)"],
]);

function script(now: number): string[][] {
  return [
    // Connection and server commands.
    ["PING"],
    ["PING", "hi"],
    ["PING", "a", "b"],
    ["ECHO", "x"],
    ["ECHO"],
    ["SELECT", "0"],
    ["SELECT", "1"],
    ["SELECT", "x"],
    ["NOSUCH"],
    ["GET"],
    ["GET", "a", "b"],
    ["HELLO", "4"],
    ["HELLO", "x"],
    ["AUTH", "x"],
    ["READONLY"],
    ["READWRITE"],
    ["CONFIG", "SET", "a", "b"],
    ["TIME", "x"],
    ["CLIENT", "SETNAME", "my name"],
    ["CLIENT", "SETNAME", "me"],
    ["CLIENT", "GETNAME"],
    ["CLIENT", "BOGUS"],
    ["WAIT", "x", "0"],
    // SET and its options.
    ["SET", "c:k"],
    ["set", "c:k", "v"],
    ["SET", "c:k", "v", "EX", "10", "PX", "10"],
    ["SET", "c:k", "v", "EX", "abc"],
    ["SET", "c:k", "v", "EX", "-1"],
    ["SET", "c:k", "v", "BOGUS"],
    ["SET", "c:k", "v", "NX", "XX"],
    ["SET", "c:k", "v2", "XX", "GET"],
    ["SET", "c:k", "v3", "NX", "GET"],
    ["SET", "c:nk", "v", "XX", "GET"],
    ["SET", "c:k", "v", "KEEPTTL", "EX", "10"],
    ["SET", "c:k", "v", "EX", "9223372036854775807"],
    ["GET", "c:k"],
    ["SETNX", "c:k", "x"],
    ["SETNX", "c:k2", "x"],
    ["GETSET", "c:k2", "y"],
    // Counters, APPEND, MSET.
    ["MSET", "c:a", "1", "c:b"],
    ["MSET", "c:a", "1", "c:b", "2"],
    ["MGET", "c:a", "c:b", "c:z"],
    ["INCR", "c:a"],
    ["INCRBY", "c:a", "x"],
    ["INCRBY", "c:a", "-10"],
    ["INCR", "c:k"],
    ["SET", "c:i", "9223372036854775806"],
    ["INCR", "c:i"],
    ["INCR", "c:i"],
    ["SET", "c:j", "01"],
    ["INCR", "c:j"],
    ["APPEND", "c:ap", ""],
    ["EXISTS", "c:ap"],
    ["APPEND", "c:ap", "x"],
    ["STRLEN", "c:ap"],
    ["DEL"],
    ["DEL", "c:a", "c:a", "c:b", "c:z"],
    ["EXISTS", "c:k", "c:k"],
    // Expiry.
    ["EXPIRE", "c:k", "100"],
    ["TTL", "c:k"],
    ["EXPIRE", "c:k", "100", "NX"],
    ["EXPIRE", "c:k", "50", "LT"],
    ["EXPIRE", "c:k", "10", "NX", "XX"],
    ["EXPIRE", "c:k", "10", "GT", "LT"],
    ["PERSIST", "c:k"],
    ["PERSIST", "c:k"],
    ["TTL", "c:z"],
    ["EXPIRE", "c:k", "-1"],
    ["EXISTS", "c:k"],
    ["SET", "c:x", "v"],
    ["EXPIREAT", "c:x", String(now + 100)],
    ["EXPIRETIME", "c:x"],
    ["PEXPIREAT", "c:x", String((now + 100) * 1000 + 500)],
    ["PEXPIRETIME", "c:x"],
    ["EXPIRETIME", "c:x"],
    ["EXPIREAT", "c:x", "1"],
    ["EXISTS", "c:x"],
    ["EXPIRETIME", "c:z"],
    // The newer string commands.
    ["SETEX", "c:s", "0", "v"],
    ["SETEX", "c:s", "100", "v"],
    ["GETDEL", "c:s"],
    ["GETDEL", "c:s"],
    ["SET", "c:g", "g"],
    ["GETEX", "c:g", "EX", "100"],
    ["GETEX", "c:g", "PERSIST"],
    ["GETEX", "c:g", "EX", "10", "PX", "10"],
    ["GETEX", "c:z", "EX", "0"],
    ["GETEX", "c:g", "EXAT", "1"],
    ["EXISTS", "c:g"],
    ["SET", "c:f", "10.50"],
    ["INCRBYFLOAT", "c:f", "0.1"],
    ["INCRBYFLOAT", "c:h", "0.1"],
    ["INCRBYFLOAT", "c:h", "0.2"],
    ["INCRBYFLOAT", "c:f", "abc"],
    ["INCRBYFLOAT", "c:f", "inf"],
    ["INCRBYFLOAT", "c:f", "1e400"],
    ["INCRBYFLOAT", "c:f", ".5"],
    ["INCRBYFLOAT", "c:l", "123456789.123456789"],
    ["INCRBYFLOAT", "c:l", "0.000000001"],
    ["INCRBYFLOAT", "c:m", "0x10"],
    ["SET", "c:r", "This is a string"],
    ["GETRANGE", "c:r", "-3", "-1"],
    ["GETRANGE", "c:r", "10", "100"],
    ["GETRANGE", "c:r", "-1", "-5"],
    ["SUBSTR", "c:r", "0", "3"],
    ["SETRANGE", "c:r", "5", "WAS"],
    ["GET", "c:r"],
    ["SETRANGE", "c:e", "10", ""],
    ["SETRANGE", "c:r", "-1", "a"],
    ["SET", "c:big", "1"],
    ["SETRANGE", "c:big", "600000000", "x"],
    ["TYPE", "c:r"],
    ["TYPE", "c:z"],
    ["TOUCH", "c:r", "c:r", "c:z"],
    // RENAME, MSETNX.
    ["SET", "c:n", "1", "EX", "100"],
    ["RENAME", "c:n", "c:n2"],
    ["TTL", "c:n2"],
    ["RENAME", "c:z", "c:y"],
    ["RENAME", "c:n2", "c:n2"],
    ["RENAMENX", "c:n2", "c:r"],
    ["RENAMENX", "c:n2", "c:n3"],
    ["MSETNX", "c:m1", "1", "c:m2", "2"],
    ["MSETNX", "c:m2", "3", "c:m3", "4"],
    ["MGET", "c:m1", "c:m2", "c:m3"],
    // Transactions.
    ["EXEC"],
    ["DISCARD"],
    ["MULTI"],
    ["MULTI"],
    ["SET", "t:a", "1"],
    ["INCR", "t:a"],
    ["SET", "t:s", "x"],
    ["INCR", "t:s"],
    ["DEL", "t:s", "t:s"],
    ["EXEC"],
    ["MULTI"],
    ["SET", "t:b", "1"],
    ["NOSUCH"],
    ["EXEC"],
    ["GET", "t:b"],
    ["WATCH", "t:w"],
    ["MULTI"],
    ["WATCH", "t:x"],
    ["SET", "t:w", "1"],
    ["EXEC"],
    ["MULTI"],
    ["EXEC"],
    ["MULTI"],
    ["UNWATCH"],
    ["GET", "t:a"],
    ["EXEC"],
    ["NOPE", "a", "b", "c", "d", "e", "f", "g", "h", "i", "x".repeat(100), "tail"],
    // Limits Redis does not have (README: "Limits Redis does not have").
    ["SET", "", "v"],
    ["SET", "\0k", "v"],
    ["SET", "l:a", "x"],
    ["EXPIRE", "l:a", "400000000"],
    ["EXPIREAT", "l:a", "9223372036854775"],
    ["SCAN", "-1"],
  ];
}

async function main(): Promise<number> {
  const redisPath = await which("redis-server");
  if (redisPath === undefined) {
    console.log("redis-server not found; install it (apt-get install -y redis-server)");
    return 2;
  }
  const dir = await Deno.makeTempDir({ prefix: "rustkvd-compat-" });
  const redisPort = await freePort();
  const redis = new Deno.Command(redisPath, {
    args: ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const node = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../server.ts", import.meta.url).pathname,
      "--node-id",
      "c1",
      "--addr",
      joinHostPort("127.0.0.1", freePort()),
      "--data-dir",
      `${dir}/c1`,
      "--resp-addr",
      "127.0.0.1:0",
      "--log-level",
      "warn",
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    const respPort = await respPortOf(node.stdout);
    const ours = await RespTestClient.connect(`127.0.0.1:${respPort}`);
    const theirs = await connectWhenUp(`127.0.0.1:${redisPort}`);
    const version = /redis_version:(\S+)/.exec(String(await theirs.call("INFO", "server")))?.[1];
    const commands = script(Math.floor(Date.now() / 1000));
    let unexpected = 0;
    let expected = 0;
    for (const command of commands) {
      const [a, b] = [await ours.call(...command), await theirs.call(...command)];
      if (same(a, b)) continue;
      const text = command.join(" ");
      const why = deliberate.get(text);
      if (why !== undefined) expected++;
      else unexpected++;
      console.log(`${why ? "expected" : "DIFFERS "} ${text}${why ? ` (${why})` : ""}`);
      console.log(
        `           rustkvd: ${JSON.stringify(a)}\n           redis:   ${JSON.stringify(b)}`,
      );
    }
    console.log(
      `${commands.length} commands against redis-server ${version}: ` +
        `${unexpected} unexpected differences, ${expected} deliberate ones`,
    );
    return unexpected === 0 ? 0 : 1;
  } finally {
    for (const p of [node, redis]) {
      try {
        p.kill("SIGKILL");
      } catch { /* gone */ }
      await p.status;
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

function same(a: Reply, b: Reply): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

async function which(name: string): Promise<string | undefined> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    const path = `${dir}/${name}`;
    if ((await Deno.stat(path).catch(() => undefined))?.isFile) return path;
  }
  return undefined;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** The RESP port the node logs once it serves ("serving RESP on host:port"), within 20 s. */
async function respPortOf(stdout: ReadableStream<Uint8Array>): Promise<number> {
  const deadline = Date.now() + 20_000;
  let text = "";
  const reader = stdout.pipeThrough(new TextDecoderStream()).getReader();
  while (Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
    const m = /serving RESP on [^\s:]+:(\d+)/.exec(text);
    if (m) {
      reader.releaseLock();
      return Number(m[1]);
    }
  }
  throw new Error(`the node did not start serving RESP:\n${text}`);
}

async function connectWhenUp(addr: string): Promise<RespTestClient> {
  for (let i = 0; i < 100; i++) {
    try {
      return await RespTestClient.connect(addr);
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`redis-server did not listen on ${addr}`);
}

if (import.meta.main) Deno.exit(await main());
