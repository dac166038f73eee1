/**
 * `deno task cluster`: a local three-node cluster in one terminal, started
 * the way the seed's README starts it in three terminals: node1 bootstraps,
 * node2 joins through node1, node3 through node1 and node2 (a joiner retries
 * until its peers answer, so all three start at once). Output lines are
 * prefixed with the node id; Ctrl-C stops all three and waits for them to
 * exit. A second run reuses ./data and restarts the same cluster. Each node
 * also serves the Redis protocol (RESP2) on 127.0.0.1:6381-6383.
 *
 * Extra flags are passed to every node (for example `--log-level debug`).
 *
 * @module
 */

import { serverPermissions, serverV8Flags } from "./permissions.ts";

const nodes = [
  { id: "node1", port: 7001, respPort: 6381 },
  { id: "node2", port: 7002, respPort: 6382 },
  { id: "node3", port: 7003, respPort: 6383 },
];
const serverEntry = new URL("../server.ts", import.meta.url).pathname;
const colors = ["\x1b[36m", "\x1b[35m", "\x1b[33m"];
const reset = "\x1b[0m";
const useColor = Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR");

async function pipeWithPrefix(
  stream: ReadableStream<Uint8Array>,
  prefix: string,
  to: (line: string) => void,
) {
  let buffered = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      to(`${prefix} ${buffered.slice(0, nl)}`);
      buffered = buffered.slice(nl + 1);
    }
  }
  if (buffered !== "") to(`${prefix} ${buffered}`);
}

const children: Deno.ChildProcess[] = [];
const pipes: Promise<void>[] = [];
for (const [i, node] of nodes.entries()) {
  const args = [
    "run",
    ...serverPermissions,
    ...serverV8Flags,
    serverEntry,
    "--node-id",
    node.id,
    "--addr",
    `127.0.0.1:${node.port}`,
    "--data-dir",
    `./data/${node.id}`,
    ...(i === 0 ? [] : ["--peers", nodes.slice(0, i).map((n) => `localhost:${n.port}`).join(",")]),
    "--resp-addr",
    `127.0.0.1:${node.respPort}`,
    ...Deno.args,
  ];
  const child = new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "piped" })
    .spawn();
  children.push(child);
  const prefix = useColor ? `${colors[i]}[${node.id}]${reset}` : `[${node.id}]`;
  pipes.push(pipeWithPrefix(child.stdout, prefix, console.log));
  pipes.push(pipeWithPrefix(child.stderr, prefix, console.error));
}
console.log(
  `cluster: ${nodes.map((n) => `${n.id}=127.0.0.1:${n.port}`).join(" ")} (Ctrl-C stops all)`,
);
console.log(
  `cluster: Redis protocol (RESP2) on ${
    nodes.map((n) => `${n.id}=127.0.0.1:${n.respPort}`).join(" ")
  } (try: redis-cli -p ${nodes[0].respPort})`,
);

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  console.log("cluster: stopping all nodes");
  for (const child of children) {
    try {
      child.kill("SIGTERM");
    } catch { /* already exited */ }
  }
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);

const statuses = await Promise.all(children.map((c) => c.status));
await Promise.all(pipes);
const failed = statuses.filter((s) => !s.success && !stopping).length;
Deno.exit(failed > 0 ? 1 : 0);
