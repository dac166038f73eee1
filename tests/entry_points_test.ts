import { assertEquals, assertTrue } from "../lib/common/test_helpers.ts";
import { parseServerArgs } from "../lib/server/config.ts";
import { parseCliArgs } from "../lib/client/cli_args.ts";
import { rustkvdVersion } from "../lib/common/version.ts";
import { serverPermissions, serverV8Flags } from "../tools/permissions.ts";

const root = new URL("..", import.meta.url).pathname;

async function run(entry: string, args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      "--allow-net",
      "--allow-write",
      "--allow-sys",
      entry,
      ...args,
    ],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

Deno.test("server --help lists the seed's flags; --version prints the version", async () => {
  const help = await run("server.ts", ["--help"]);
  assertEquals(help.code, 0);
  for (
    const flag of [
      "--node-id",
      "--addr",
      "--peers",
      "--data-dir",
      "--advertise-addr",
      "--heartbeat-ms",
      "--election-ms",
    ]
  ) {
    assertTrue(help.stdout.includes(flag), `help lacks ${flag}`);
  }
  const version = await run("server.ts", ["--version"]);
  assertEquals(version.stdout.trim(), `rustkvd-server ${rustkvdVersion}`);
  const bad = await run("server.ts", ["--bogus"]);
  assertEquals(bad.code, 2);
  assertTrue(bad.stderr.includes("--bogus"));
});

Deno.test("cli --help lists the seed's subcommands; bad usage exits 2", async () => {
  const help = await run("cli.ts", ["--help"]);
  assertEquals(help.code, 0);
  for (const sub of ["put", "get", "delete", "scan", "watch", "status", "bench", "--peers"]) {
    assertTrue(help.stdout.includes(sub), `help lacks ${sub}`);
  }
  const subHelp = await run("cli.ts", ["bench", "--help"]);
  assertTrue(subHelp.stdout.includes("--read-ratio") && subHelp.stdout.includes("--inflight"));
  assertEquals((await run("cli.ts", ["--version"])).stdout.trim(), `rustkvd-cli ${rustkvdVersion}`);
  const missing = await run("cli.ts", ["put", "onlykey"]);
  assertEquals(missing.code, 2);
  assertTrue(missing.stderr.includes("put expects KEY VALUE"));
  assertEquals((await run("cli.ts", ["frobnicate"])).code, 2);
});

Deno.test("the version constant matches deno.json", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${root}/deno.json`));
  assertEquals(config.version, rustkvdVersion);
});

Deno.test("deno task start runs the server with the same permissions and V8 flags as the binary", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${root}/deno.json`));
  assertEquals(
    config.tasks.start,
    ["deno run", ...serverPermissions, ...serverV8Flags, "server.ts"].join(" "),
  );
});

Deno.test("server flags: defaults, the seed's start sequence, and clear errors", () => {
  const d = parseServerArgs([]);
  assertTrue(d.kind === "run");
  assertEquals(d.config.nodeId, "node1");
  assertEquals(d.config.listenAddr, "127.0.0.1:7001");
  assertEquals(d.config.dataDir, "./data/node1");
  assertEquals(d.config.peers, []);
  assertEquals(d.config.readLease, true);
  const noLease = parseServerArgs(["--read-lease", "off"]);
  assertTrue(noLease.kind === "run" && noLease.config.readLease === false);
  // `deno task start -- --node-id n9` passes the task's "--" first.
  const viaTask = parseServerArgs(["--", "--node-id", "n9"]);
  assertTrue(viaTask.kind === "run" && viaTask.config.nodeId === "n9");
  const n3 = parseServerArgs([
    "--node-id",
    "node3",
    "--addr",
    "0.0.0.0:7003",
    "--peers",
    "localhost:7001,localhost:7002",
    "--data-dir",
    "./data/node3",
  ]);
  assertTrue(n3.kind === "run");
  assertEquals(n3.config.advertiseAddr, "127.0.0.1:7003");
  assertEquals(n3.config.peers, ["localhost:7001", "localhost:7002"]);
  const cases: Array<[string[], string]> = [
    [["--addr", "7001"], "expected HOST:PORT"],
    [["--addr", "h:70000"], "port must be 1..65535"],
    [["--addr", "127.0.0.1:0"], "port must be 1..65535"],
    [["--resp-addr", "127.0.0.1:70000"], "port must be 0..65535"],
    [["--node-id", "bad id"], "--node-id"],
    [["--election-ms", "50", "--heartbeat-ms", "50"], "at least twice"],
    [["--heartbeat-ms", "0"], "between 1 and"],
    [["--log-level", "loud"], "--log-level"],
    [["--read-lease", "yes"], "--read-lease: expected on or off"],
    [["--initial-cluster", "node2=127.0.0.1:7002"], "must include this node"],
    [["--peers", "a:1", "--initial-cluster", "node1=127.0.0.1:7001"], "not both"],
    [["--peers", ""], "--peers: at least one HOST:PORT"],
    [["--peers", " , "], "--peers: at least one HOST:PORT"],
    [["--data-dir", ""], "--data-dir: must not be empty"],
    [["--advertise-addr", "0.0.0.0:7001"], "not an address peers can reach"],
  ];
  for (const [argv, message] of cases) {
    const r = parseServerArgs(argv);
    assertTrue(
      r.kind === "error" && r.message.includes(message),
      `${argv.join(" ")} -> ${JSON.stringify(r)}`,
    );
  }
  const anyResp = parseServerArgs(["--resp-addr", "127.0.0.1:0"]);
  assertTrue(
    anyResp.kind === "run" && anyResp.config.respAddr === "127.0.0.1:0",
    "RESP on any port",
  );
  const ic = parseServerArgs(["--initial-cluster", "node1=127.0.0.1:7001,node2=127.0.0.1:7002"]);
  assertTrue(ic.kind === "run" && ic.config.initialCluster?.get("node2") === "127.0.0.1:7002");
});

Deno.test("cli flags: the seed's walkthrough parses, bad values are rejected with the limit", () => {
  const put = parseCliArgs([
    "--peers",
    "localhost:7001,localhost:7002",
    "put",
    "user:1001",
    '{"name":"Alice"}',
  ]);
  assertTrue(put.kind === "run" && put.command.name === "put");
  assertEquals(put.global.peers, ["localhost:7001", "localhost:7002"]);
  // As `deno task cli -- --peers ... get ...` passes them: the task's "--" comes first.
  const viaTask = parseCliArgs(["--", "--peers", "localhost:7002", "get", "user:1001"]);
  assertEquals(
    viaTask.kind === "run" && [viaTask.global.peers, viaTask.command],
    [["localhost:7002"], { name: "get", key: "user:1001", version: undefined }],
  );
  const get = parseCliArgs(["--peers", "localhost:7001", "get", "user:1001", "--version", "10"]);
  assertTrue(get.kind === "run" && get.command.name === "get" && get.command.version === 10);
  const scan = parseCliArgs(["scan", "--prefix", "user:", "--limit", "100"]);
  assertTrue(scan.kind === "run" && scan.command.name === "scan" && scan.command.limit === 100);
  const bench = parseCliArgs([
    "bench",
    "--operations",
    "1000000",
    "--concurrency",
    "64",
    "--value-size",
    "256",
    "--read-ratio",
    "0.8",
  ]);
  assertTrue(
    bench.kind === "run" && bench.command.name === "bench" && bench.command.readRatio === 0.8,
  );
  assertTrue(parseCliArgs(["--version"]).kind === "version");
  const txn = parseCliArgs([
    "txn",
    "--if",
    "version(lock) = 0",
    "--if",
    "value(mode)!= off ",
    "--then",
    "put lock holder one",
    "--then",
    "delete stale ",
    "--else",
    "get lock",
  ]);
  assertEquals(txn.kind === "run" && txn.command, {
    name: "txn",
    compare: [
      { key: "lock", result: "equal", version: 0 },
      { key: "mode", result: "notEqual", value: "off" },
    ],
    success: [{ put: "lock", value: "holder one" }, { delete: "stale" }],
    failure: [{ get: "lock" }],
  });
  const cases: Array<[string[], string]> = [
    [["scan", "--limit", "10001"], "between 1 and 10000"],
    [["scan", "--limit", "-1"], "--limit"],
    [["put", "k", "v", "--ttl", "0"], "at least 1 second"],
    [["bench", "--read-ratio", "2"], "[0, 1]"],
    [["watch"], "exactly one of --prefix or --key"],
    [["get", "k", "--consistency", "eventual"], "linearizable or serializable"],
    [["member", "add", "node4"], "member:"],
    [["--timeout", "999999", "status"], "between 1 and"],
    [["txn"], "at least one --if, --then or --else"],
    [["txn", "--if", "version(k) ~ 1"], "expected 'version(KEY) OP N'"],
    [["txn", "--if", "version(k) >= 1"], "no >= or <="],
    [["txn", "--if", "value(k) <= a"], "no >= or <="],
    [["txn", "--if", "version(k) = x"], "non-negative integer"],
    [["txn", "--then", "put k"], "--then: expected 'put KEY VALUE'"],
    [["txn", "--else", "get k v"], "--else: expected"],
    [["put", "k", "v", "--version", "3"], "put does not take --version (its options: --ttl"],
    [["delete", "k", "--version", "3"], "delete does not take --version"],
    [["get", "k", "--ttl", "5"], "get does not take --ttl"],
    [["status", "--prefix", "x"], "status does not take --prefix"],
    [["bench", "--read-ratio", ""], "--read-ratio: expected a number"],
    [["bench", "--read-ratio", "0x1"], "--read-ratio: expected a number"],
    [["bench", "--operations", "0"], "--operations: must be at least 1"],
    [["bench", "--duration", "0"], "--duration: must be at least 1"],
    [["bench", "--key-space", "0"], "--key-space: must be at least 1"],
    [["scan", "--start", "b", "--end", "a"], "--start must sort before --end"],
    [["scan", "--start", "a", "--end", "a"], "--start must sort before --end"],
  ];
  for (const [argv, message] of cases) {
    const r = parseCliArgs(argv);
    assertTrue(
      r.kind === "error" && r.message.includes(message),
      `${argv.join(" ")} -> ${JSON.stringify(r)}`,
    );
  }
});

Deno.test("a flag given twice is refused by both executables, naming it", () => {
  const server = parseServerArgs(["--peers", "a:1", "--peers", "b:2"]);
  assertTrue(server.kind === "error" && server.message === "--peers is given more than once");
  const cli = parseCliArgs(["--peers", "a:1", "get", "k", "--peers", "b:2"]);
  assertTrue(cli.kind === "error" && cli.message === "--peers is given more than once");
  const txn = parseCliArgs(["txn", "--then", "put a 1", "--then", "put b 2"]);
  assertTrue(txn.kind === "run", "--if, --then and --else repeat by design");
});
