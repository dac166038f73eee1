/**
 * The table and notes `deno task bench cluster` prints and writes to its
 * section of bench/RESULTS.md: rustkvd's figures beside the seed's claims and, when etcd
 * was measured in the same run, etcd's figure and the ratio rustkvd/etcd per
 * row — ratios from one run being the figures these shared machines can
 * reproduce.
 *
 * @module
 */

import { type Measurements, medianMs, type Row } from "./cluster_workloads.ts";
import { fmtInt, fmtMs } from "./format.ts";

const header = "| workload | workers x in-flight | ops/s | p50 ms | p99 ms | p999 ms | errors | " +
  "seed's claim |";
const align = "|---|---|---:|---:|---:|---:|---|---|";

function ourCells(r: Row): string {
  return `| ${r.workload} | ${r.clients} | ${fmtInt(r.opsPerSec)} | ${fmtMs(r.p50Ms)} | ${
    fmtMs(r.p99Ms)
  } | ${fmtMs(r.p999Ms)} | ${r.errors} | ${r.seed} |`;
}

function failoverCells(m: Measurements): string {
  return `| leader failover (kill -9, 100/s writer) | median of ${m.failoversMs.length} | – | ${
    fmtInt(medianMs(m.failoversMs))
  } ms | – | – | – | election < 5 ms |`;
}

/** "2.35": how many times rustkvd's figure is etcd's. */
function ratio(ours: number, theirs: number): string {
  return theirs > 0 && Number.isFinite(ours / theirs) ? (ours / theirs).toFixed(2) : "–";
}

/** rustkvd's rows alone (no etcd on PATH, or --no-etcd). */
export function soloTable(ours: Measurements): string {
  return [header, align, ...ours.rows.map(ourCells), failoverCells(ours)].join("\n");
}

/**
 * rustkvd's rows with etcd's ops/s and p99 and the ratio of ops/s; on the
 * failover row, etcd's median failover time and the ratio of times.
 */
export function compareTable(ours: Measurements, theirs: Measurements): string {
  const rows = ours.rows.map((r, i) => {
    const e = theirs.rows[i];
    if (e?.workload !== r.workload || e.clients !== r.clients) {
      throw new Error(`etcd row ${i} is ${e?.workload}, not ${r.workload}`);
    }
    return `${ourCells(r)} ${fmtInt(e.opsPerSec)} | ${fmtMs(e.p99Ms)} | ${
      ratio(r.opsPerSec, e.opsPerSec)
    } |`;
  });
  const oursMs = medianMs(ours.failoversMs);
  const theirsMs = medianMs(theirs.failoversMs);
  return [
    `${header} etcd ops/s | etcd p99 ms | ratio |`,
    `${align}---:|---:|---:|`,
    ...rows,
    `${failoverCells(ours)} – | ${fmtInt(theirsMs)} ms | ${ratio(oursMs, theirsMs)} |`,
  ].join("\n");
}

/** How the etcd columns were measured and how to read the ratio, for under the setup line. */
export function etcdNotes(version: string, theirs: Measurements): string[] {
  const errors = theirs.rows.filter((r) => r.errors !== "0")
    .map((r) => `${r.workload} ${r.clients}: ${r.errors}`);
  return [
    `etcd columns: etcd ${version}, 3 members on 127.0.0.1 with its defaults (fsync on, 100 ms ` +
    "heartbeat, 1 s election timeout), measured after the rustkvd cluster was stopped, by the " +
    "same load generator through etcd's v3 gRPC API (KV.Put, KV.Range, KV.Txn comparing the key's " +
    "mod_revision; writes, transactions and linearizable reads " +
    "to the leader, found with Maintenance.Status; etcd 3.4 confirms a linearizable read with a " +
    "ReadIndex round, not a lease). The failover rows compare the two defaults: an election " +
    "timeout of 150 ms against etcd's 1 s, which most of the difference comes from. " +
    "ratio = rustkvd / etcd: of ops/s on the load " +
    "and sequential rows (above 1: rustkvd is faster), of the median failover time on the " +
    "failover row, whose etcd figure is in the p99 column (below 1: rustkvd recovers faster)." +
    (errors.length > 0 ? ` etcd errors: ${errors.join("; ")}.` : ""),
  ];
}

function rssOf(m: Measurements): string {
  return m.rss.map((r) => `${r.member} ${r.mib.toFixed(0)} MiB`).join(", ");
}

function meanMiB(m: Measurements): number {
  return m.rss.reduce((sum, r) => sum + r.mib, 0) / m.rss.length;
}

/** Each member's RSS after the load runs; with etcd, both stores and the ratio of their means. */
export function rssLine(ours: Measurements, theirs?: Measurements): string {
  if (!theirs) return rssOf(ours);
  return `rustkvd ${rssOf(ours)}; etcd ${rssOf(theirs)}; ratio of means ${
    ratio(meanMiB(ours), meanMiB(theirs))
  }`;
}

/**
 * The cluster section of bench/RESULTS.md: a heading and the run's date above
 * `report`, so a reader of the shared file knows which bench wrote it and when.
 */
export function clusterSection(report: string): string {
  return [
    "## Cluster: `deno task bench cluster`",
    "",
    `Written by \`deno task bench cluster\` on ${new Date().toISOString().slice(0, 10)}; ` +
    "rerun it to replace this section.",
    "",
    report,
  ].join("\n");
}
