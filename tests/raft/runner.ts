/**
 * A small script runner for Raft scenarios (in the spirit of etcd's datadriven
 * tests). A scenario file is a list of blocks:
 *
 *   # optional comments
 *   command arg arg key=value
 *   ----
 *   expected output (describe renderings), up to a blank line
 *
 * Commands: add-nodes, campaign, propose, propose-conf-change, read-index,
 * transfer-leader, tick, tick-heartbeat, tick-election, process-ready, deliver,
 * drop, partition, isolate, heal, stabilize, status, log, compact, restart.
 * `REWRITE=1` rewrites the expected output from the actual one.
 *
 * @module
 */

import { utf8 } from "../../lib/common/bytes.ts";
import { describeEntry, describeMessage, describeReadyLines } from "../../lib/raft/describe.ts";
import type { ConfChange } from "../../lib/raft/types.ts";
import { TestCluster } from "../../lib/raft/testing.ts";

/** One command and its expected output. */
export interface Block {
  comments: string[];
  command: string;
  expected: string;
}

/** Parses a scenario file. */
export function parseScenario(text: string): Block[] {
  const lines = text.split("\n");
  const blocks: Block[] = [];
  let i = 0;
  while (i < lines.length) {
    const comments: string[] = [];
    while (i < lines.length && (lines[i].startsWith("#") || lines[i].trim() === "")) {
      if (lines[i].startsWith("#")) comments.push(lines[i]);
      else if (comments.length > 0) comments.push("");
      i++;
    }
    while (comments.length > 0 && comments[comments.length - 1] === "") comments.pop();
    if (i >= lines.length) break;
    const command = lines[i++];
    if (lines[i] !== "----") throw new Error(`line ${i + 1}: expected ---- after "${command}"`);
    i++;
    const out: string[] = [];
    while (i < lines.length && lines[i] !== "") out.push(lines[i++]);
    blocks.push({ comments, command, expected: out.join("\n") });
  }
  return blocks;
}

/** Renders blocks back to a scenario file (used by REWRITE=1). */
export function formatScenario(blocks: Block[]): string {
  return blocks.map((b) =>
    [...b.comments, b.command, "----", ...(b.expected === "" ? [] : [b.expected])].join("\n")
  ).join("\n\n") + "\n";
}

/** Runs scenario commands against a TestCluster and renders what happened. */
export class ScenarioRunner {
  #c: TestCluster | undefined;
  #out: string[] = [];

  #cluster(): TestCluster {
    if (!this.#c) throw new Error("add-nodes first");
    return this.#c;
  }

  /** Runs one command line; returns its output. */
  run(line: string): string {
    this.#out = [];
    const [cmd, ...rest] = line.trim().split(/\s+/);
    const kv = new Map<string, string>();
    const args: string[] = [];
    for (const a of rest) {
      const eq = a.indexOf("=");
      if (eq > 0) kv.set(a.slice(0, eq), a.slice(eq + 1));
      else args.push(a);
    }
    this.#dispatch(cmd, args, kv);
    return this.#out.join("\n");
  }

  #print(s: string): void {
    this.#out.push(s);
  }

  #ids(args: string[]): string[] {
    return args.length > 0 ? args : [...this.#cluster().peers.keys()];
  }

  #dispatch(cmd: string, args: string[], kv: Map<string, string>): void {
    switch (cmd) {
      case "add-nodes": {
        const n = Number(args[0]);
        const ids = Array.from({ length: n }, (_, i) => `n${i + 1}`);
        const learners = kv.get("learners")?.split(",") ?? [];
        this.#c = new TestCluster(ids, {
          preVote: kv.get("prevote") === "true",
          checkQuorum: kv.get("checkquorum") === "true",
          electionTicks: Number(kv.get("election") ?? 10),
          heartbeatTicks: Number(kv.get("heartbeat") ?? 1),
          maxInflight: kv.has("inflight") ? Number(kv.get("inflight")) : undefined,
          maxSizePerMsg: kv.has("maxsize") ? Number(kv.get("maxsize")) : undefined,
          onReady: (id, rd) => {
            this.#print(`> ${id} handling Ready`);
            for (const l of describeReadyLines(rd)) this.#print(`  ${l}`);
          },
        }, learners);
        this.#status();
        return;
      }
      case "add-node": {
        this.#cluster().addPeer(args[0]);
        this.#status([args[0]]);
        return;
      }
      case "campaign":
        this.#cluster().node(args[0]).campaign();
        this.#status([args[0]]);
        return;
      case "propose": {
        const res = this.#cluster().node(args[0]).propose(utf8(args.slice(1).join(" ")));
        this.#print(
          res.ok
            ? `ok index=${res.index} term=${res.term}`
            : `rejected ${res.reason} leader=${res.leaderId || "-"}`,
        );
        return;
      }
      case "propose-conf-change": {
        const change: ConfChange = { type: args[1] as ConfChange["type"], nodeId: args[2] };
        const res = this.#cluster().node(args[0]).proposeMembershipChange(change);
        this.#print(
          res.ok
            ? `ok index=${res.index} term=${res.term}`
            : `rejected ${res.reason} leader=${res.leaderId || "-"}`,
        );
        return;
      }
      case "read-index": {
        const res = this.#cluster().node(args[0]).readIndex(utf8(args[1]));
        this.#print(res.ok ? "ok" : `rejected ${res.reason} leader=${res.leaderId || "-"}`);
        return;
      }
      case "transfer-leader":
        this.#cluster().node(args[0]).transferLeader(args[1]);
        this.#status([args[0]]);
        return;
      case "tick":
        this.#cluster().tick(args[0], Number(args[1] ?? 1));
        this.#status([args[0]]);
        return;
      case "tick-heartbeat":
        this.#cluster().tick(args[0], this.#cluster().opts.heartbeatTicks ?? 1);
        this.#status([args[0]]);
        return;
      case "tick-election": {
        // Enough ticks to pass any randomized election timeout.
        const n = 2 * (this.#cluster().opts.electionTicks ?? 10);
        this.#cluster().tick(args[0], n);
        this.#status([args[0]]);
        return;
      }
      case "process-ready":
        for (const id of this.#ids(args)) this.#cluster().processReady(id);
        return;
      case "deliver": {
        const to = kv.get("to");
        const msgs = this.#cluster().deliver((m) => to === undefined || m.to === to);
        for (const m of msgs) this.#print(describeMessage(m));
        return;
      }
      case "drop": {
        const c = this.#cluster();
        const [from, to] = args;
        const dropped = c.queue.filter((m) => m.from === from && (to === undefined || m.to === to));
        c.queue = c.queue.filter((m) => !dropped.includes(m));
        for (const m of dropped) this.#print(`dropped ${describeMessage(m)}`);
        return;
      }
      case "partition": {
        const bar = args.indexOf("|");
        this.#cluster().partition(args.slice(0, bar), args.slice(bar + 1));
        this.#print("ok");
        return;
      }
      case "isolate":
        this.#cluster().isolate(args[0]);
        this.#print("ok");
        return;
      case "heal":
        this.#cluster().heal();
        this.#print("ok");
        return;
      case "stabilize": {
        const c = this.#cluster();
        for (let round = 0; round < 100; round++) {
          const any = c.processAll();
          const msgs = c.deliver();
          for (const m of msgs) this.#print(describeMessage(m));
          if (!any && msgs.length === 0 && c.queue.length === 0) break;
        }
        return;
      }
      case "status":
        this.#status(args.length > 0 ? args : undefined);
        return;
      case "log": {
        const node = this.#cluster().node(args[0]);
        const s = node.status();
        const p = this.#cluster().peer(args[0]);
        const snap = p.storage.snapshot().meta;
        this.#print(
          `first=${s.firstIndex} last=${s.lastIndex} commit=${s.commit} applied=${s.applied} snapshot=${snap.term}/${snap.index}`,
        );
        const lo = Math.max(s.firstIndex, s.lastIndex - 20);
        const ents = s.lastIndex >= lo
          ? p.storage.entries(Math.max(lo, p.storage.firstIndex()), p.storage.lastIndex() + 1)
          : [];
        for (const e of ents) this.#print(describeEntry(e));
        return;
      }
      case "compact": {
        const p = this.#cluster().peer(args[0]);
        const s = p.node.status();
        const index = Number(args[1] ?? s.applied);
        p.storage.createSnapshot(index, s.conf, utf8(`state@${index}`));
        p.storage.compact(index);
        this.#print(`snapshot at ${index}, first index now ${p.storage.firstIndex()}`);
        return;
      }
      case "restart":
        this.#cluster().restart(args[0]);
        this.#status([args[0]]);
        return;
      default:
        throw new Error(`unknown command ${cmd}`);
    }
  }

  #status(ids?: string[]): void {
    for (const id of ids ?? [...this.#cluster().peers.keys()]) {
      const s = this.#cluster().node(id).status();
      const conf = s.conf.learners.length > 0
        ? ` voters=(${s.conf.voters.join(" ")}) learners=(${s.conf.learners.join(" ")})`
        : ` voters=(${s.conf.voters.join(" ")})`;
      let line =
        `${id}: ${s.role} term=${s.term} vote=${s.vote || "-"} leader=${s.leaderId || "-"} ` +
        `commit=${s.commit} applied=${s.applied} last=${s.lastIndex}${conf}`;
      if (s.role === "leader") {
        const prs = Object.entries(s.progress).filter(([pid]) => pid !== id)
          .map(([pid, p]) => `${pid}:${p.state}/${p.match}/${p.next}`);
        line += ` progress=[${prs.join(" ")}]`;
      }
      this.#print(line);
    }
  }
}
