/**
 * Raft core benchmark (`deno task bench raft`): a 3-voter cluster of the real
 * core in one process, over an instant in-memory network and MemoryStorage,
 * driven exactly like the node runtime drives it (Ready -> persist -> send ->
 * apply -> advance). Measures entries committed per CPU-second at several
 * batch sizes (proposals submitted between two Ready cycles), and what the
 * Ready processing costs per entry.
 *
 *   deno run -A bench/raft.ts [--entries N] [--size BYTES]
 *
 * @module
 */

import process from "node:process";
import { SeededRandom } from "../lib/common/random.ts";
import { RaftNode } from "../lib/raft/raft_node.ts";
import { MemoryStorage } from "../lib/raft/storage.ts";
import { decodeMessage, encodeMessage } from "../lib/raft/codec.ts";
import type { Message } from "../lib/raft/types.ts";

interface Row {
  batch: number;
  entries: number;
  cpuMs: number;
  readyMs: number;
  readies: number;
  messages: number;
  appendEntries: number;
  appends: number;
}

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function arg(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
}

/** Commits `total` entries of `size` bytes, `batch` proposals per driver round. */
function runRow(batch: number, total: number, size: number, codec: boolean): Row {
  const ids = ["n1", "n2", "n3"];
  const conf = { voters: ids, learners: [] };
  const rng = new SeededRandom(42);
  const nodes = new Map<string, { node: RaftNode; storage: MemoryStorage; applied: number }>();
  for (const id of ids) {
    const storage = new MemoryStorage(conf, 1);
    const node = new RaftNode({
      id,
      groupId: 1,
      storage,
      random: rng.fork(),
      electionTicks: 15,
      heartbeatTicks: 5,
      preVote: true,
      checkQuorum: true,
    });
    nodes.set(id, { node, storage, applied: 0 });
  }
  let queue: Message[] = [];
  const row: Row = {
    batch,
    entries: 0,
    cpuMs: 0,
    readyMs: 0,
    readies: 0,
    messages: 0,
    appendEntries: 0,
    appends: 0,
  };
  const drive = (measure: boolean) => {
    for (const [, p] of nodes) {
      while (p.node.hasReady()) {
        const t0 = measure ? performance.now() : 0;
        const rd = p.node.ready();
        for (const m of rd.messages) queue.push(m);
        if (rd.snapshot) p.storage.applySnapshot(rd.snapshot);
        p.storage.append(rd.entries);
        if (rd.hardState) p.storage.setHardState(rd.hardState);
        for (const m of rd.persistedMessages) queue.push(m);
        p.applied += rd.committedEntries.length;
        p.node.advance(rd);
        if (measure) {
          row.readyMs += performance.now() - t0;
          row.readies++;
        }
      }
    }
    const msgs = queue;
    queue = [];
    for (const m of msgs) {
      if (measure) {
        row.messages++;
        if (m.type === 0 && m.entries.length > 0) {
          row.appends++;
          row.appendEntries += m.entries.length;
        }
      }
      nodes.get(m.to)!.node.step(codec ? decodeMessage(encodeMessage(m)) : m);
    }
    return msgs.length > 0;
  };
  const leader = nodes.get("n1")!;
  leader.node.campaign();
  for (let i = 0; i < 100 && (drive(false) || leader.node.status().role !== "leader"); i++) {
    // elect
  }
  const payload = new Uint8Array(size).fill(7);
  const startApplied = leader.applied;
  const c0 = cpuMs();
  let proposed = 0;
  let rounds = 0;
  while (leader.applied - startApplied < total) {
    for (let i = 0; i < batch && proposed < total; i++) {
      const r = leader.node.propose(payload);
      if (!r.ok) break;
      proposed++;
    }
    drive(true);
    if (++rounds % 20 === 0) { for (const [, p] of nodes) p.node.tick(); }
  }
  while (drive(true)) { /* drain */ }
  row.cpuMs = cpuMs() - c0;
  row.entries = leader.applied - startApplied;
  return row;
}

/** Prints the setup and one table row per batch size. */
export async function main(args: string[]): Promise<void> {
  const total = arg(args, "--entries", 100_000);
  const size = arg(args, "--size", 128);
  const d = Deno.version;
  console.log("Raft core: 3 voters in one process, instant in-memory network, MemoryStorage");
  console.log(
    `  ${total} entries of ${size} bytes per row; batch = proposals between two Ready cycles`,
  );
  console.log(`  Deno ${d.deno}, V8 ${d.v8}, ${navigator.hardwareConcurrency} CPUs`);
  console.log("  CPU time = user + system of this process (all 3 replicas and the driver)");
  console.log("  Ready cycle = ready() + persisting into MemoryStorage + advance(), all replicas");
  console.log("  codec = every message encoded and decoded as the transport would");
  console.log("");
  console.log(
    "| batch | codec | entries/CPU-s | µs CPU/entry | µs in Ready cycles/entry " +
      "| entries/Append | Readies/1k entries |",
  );
  console.log("|---:|:---:|---:|---:|---:|---:|---:|");
  runRow(64, Math.min(total, 20_000), size, true); // warm up the JIT
  const rows: [number, boolean][] = [1, 8, 64, 512, 4096].map((b) => [b, false]);
  rows.push([64, true], [512, true]);
  for (const [batch, codec] of rows) {
    const r = runRow(batch, total, size, codec);
    const cells = [
      String(batch),
      codec ? "yes" : "no",
      Math.round(r.entries / (r.cpuMs / 1000)).toLocaleString("en-US"),
      (r.cpuMs * 1000 / r.entries).toFixed(2),
      (r.readyMs * 1000 / r.entries).toFixed(2),
      (r.appendEntries / Math.max(1, r.appends)).toFixed(1),
      (r.readies * 1000 / r.entries).toFixed(1),
    ];
    console.log(`| ${cells.join(" | ")} |`);
  }
  await Promise.resolve();
}

if (import.meta.main) await main(Deno.args);
