/**
 * Bad input for every RPC (TESTING.md layer 5): a seeded generator of
 * malformed and extreme requests — empty, oversized and system keys,
 * oversized values and messages, inverted ranges, huge limits, TTLs out of
 * range, compacted and future versions, unknown members and addresses,
 * garbage Raft messages and snapshot chunks, foreign cluster ids — sent raw
 * (no client-side checks) to a live 3-node cluster, plus garbage bytes and
 * truncated frames on the peer port.
 *
 * Expected for every request: an answer within the deadline with an
 * expected status (OK or a documented refusal, never UNKNOWN, INTERNAL,
 * UNAVAILABLE or a deadline), a refusal for every request that breaks a
 * documented limit, no server crash, and no state change other than the
 * writes that were acknowledged (the revision moves by exactly their count).
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { maxKeyBytes, maxValueBytes } from "../../lib/common/limits.ts";
import { SeededRandom } from "../../lib/common/random.ts";
import { loadRustkvdPackage } from "../../lib/server/proto.ts";
import { rawCall, TestCluster } from "./cluster.ts";

// deno-lint-ignore no-explicit-any
type Msg = any;

/** Options of a fuzz run. */
export interface FuzzOptions {
  perRpc: number;
  seed: number;
  /** Told after each RPC's requests (long runs show where they are). */
  progress?: (line: string) => void;
}

/** What a fuzz run found. */
export interface FuzzResult {
  perRpc: Map<string, number>;
  /** Wall time spent on each RPC's requests, ms (they run one at a time). */
  elapsedMs: Map<string, number>;
  violations: string[];
  crashes: number;
}

const s = grpc.status;
/** Statuses a refusal may carry (documented in lib/server/status.ts). */
/** Violations after which a fuzz run stops: enough to diagnose, and a bounded run time. */
const maxViolations = 50;

const refusals = new Set([
  s.INVALID_ARGUMENT,
  s.OUT_OF_RANGE,
  s.FAILED_PRECONDITION,
  s.RESOURCE_EXHAUSTED,
  s.NOT_FOUND,
  s.ALREADY_EXISTS,
  s.PERMISSION_DENIED,
]);

/** A generated request: what to send and what must happen. */
interface Case {
  service: "KVStore" | "Admin" | "RaftInternal";
  method: string;
  request: Msg;
  /** The request breaks a documented limit: it must be refused. */
  mustRefuse: boolean;
  /** A success would write (for the revision accounting). */
  writes?: boolean;
}

function bytes(r: SeededRandom, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = r.nextInt(256);
  return b;
}

function pick<T>(r: SeededRandom, xs: T[]): T {
  return xs[r.nextInt(xs.length)];
}

/** A key: valid (and then `ok`) or breaking a limit. */
function genKey(r: SeededRandom): { key: Uint8Array; ok: boolean } {
  switch (r.nextInt(8)) {
    case 0:
      return { key: new Uint8Array(), ok: false };
    case 1:
      return { key: new Uint8Array(maxKeyBytes + 1 + r.nextInt(10_000)).fill(107), ok: false };
    case 2:
      return { key: new Uint8Array([0, ...bytes(r, 3)]), ok: false }; // the system key space
    case 3:
      return { key: new Uint8Array(maxKeyBytes).fill(120), ok: true };
    case 4:
      return { key: new Uint8Array([1 + r.nextInt(255), ...bytes(r, r.nextInt(16))]), ok: true };
    default:
      return { key: new TextEncoder().encode(`fuzz/${r.nextInt(20)}`), ok: true };
  }
}

function genValue(r: SeededRandom): { value: Uint8Array; ok: boolean } {
  switch (r.nextInt(6)) {
    case 0:
      return { value: new Uint8Array(maxValueBytes + 1), ok: false };
    case 1:
      return { value: new Uint8Array(maxValueBytes), ok: true };
    case 2:
      return { value: new Uint8Array(), ok: true };
    default:
      return { value: bytes(r, r.nextInt(100)), ok: true };
  }
}

const hugeU64 = Number.MAX_SAFE_INTEGER;
let nextRequestId = 0;

function genCase(r: SeededRandom, rpc: string, revision: number): Case {
  const version = () =>
    pick(r, [0, 1, revision, revision + 1 + r.nextInt(1_000), hugeU64, r.nextInt(revision + 1)]);
  switch (rpc) {
    case "Get": {
      const k = genKey(r);
      return {
        service: "KVStore",
        method: "Get",
        request: { key: k.key, version: version(), consistency: pick(r, [0, 1]) },
        mustRefuse: !k.ok,
      };
    }
    case "Put": {
      const k = genKey(r);
      const v = genValue(r);
      // No TTL short enough to expire during the run: an expiry is a write of its own.
      const ttl = pick(r, [0, 0, 3600, 86_400, 10 * 365 * 86_400 + 1, hugeU64]);
      const req: Msg = { key: k.key, value: v.value, ttl_secs: ttl, prev_kv: r.nextInt(2) === 1 };
      if (r.nextInt(3) === 0) req.if_version = version();
      if (r.nextInt(4) === 0) {
        // Unique ids (a repeated one is deduplicated: acknowledged without a new revision).
        req.request_id = String(nextRequestId++).padStart(pick(r, [16, 128, 129, 100_000]), "r");
      }
      const badId = (req.request_id?.length ?? 0) > 128; // validateRequestId's limit
      return {
        service: "KVStore",
        method: "Put",
        request: req,
        mustRefuse: !k.ok || !v.ok || ttl > 10 * 365 * 86_400 || badId,
        writes: true,
      };
    }
    case "Delete": {
      const k = genKey(r);
      const req: Msg = { key: k.key, prev_kv: r.nextInt(2) === 1 };
      if (r.nextInt(3) === 0) req.if_version = version();
      return {
        service: "KVStore",
        method: "Delete",
        request: req,
        mustRefuse: !k.ok,
        writes: true,
      };
    }
    case "Scan": {
      const a = genKey(r).key;
      const b = genKey(r).key;
      return {
        service: "KVStore",
        method: "Scan",
        request: {
          prefix: r.nextInt(3) === 0 ? a : new Uint8Array(),
          start: r.nextInt(2) ? a : new Uint8Array(),
          end: r.nextInt(2) ? b : new Uint8Array(),
          limit: pick(r, [0, 1, 1000, 2 ** 32 - 1]),
          version: version(),
          keys_only: r.nextInt(2) === 1,
          consistency: pick(r, [0, 1]),
        },
        mustRefuse: false,
      };
    }
    case "Watch": {
      const k = genKey(r);
      return {
        service: "KVStore",
        method: "Watch",
        request: {
          key: r.nextInt(2) ? k.key : new Uint8Array(),
          prefix: r.nextInt(2) ? k.key : new Uint8Array(),
          start_version: version(),
          prev_kv: r.nextInt(2) === 1,
        },
        mustRefuse: false,
      };
    }
    case "NodeStatus":
      return { service: "KVStore", method: "NodeStatus", request: {}, mustRefuse: false };
    case "Txn":
      return genTxn(r, version);
    case "Compact":
      // Only revisions that cannot be compacted: a valid one is a real state change.
      return {
        service: "Admin",
        method: "Compact",
        request: { version: pick(r, [revision + 1 + r.nextInt(100), hugeU64]) },
        mustRefuse: true,
      };
    case "MemberAdd":
      return {
        service: "Admin",
        method: "MemberAdd",
        request: {
          id: pick(r, ["", "n1", "bad id!", "x".repeat(300)]),
          addr: pick(r, ["", "nohost", "127.0.0.1:0", "127.0.0.1:99999"]),
          learner: r.nextInt(2) === 1,
        },
        mustRefuse: true,
      };
    case "MemberRemove":
      return {
        service: "Admin",
        method: "MemberRemove",
        request: { id: pick(r, ["", "nobody", "x".repeat(300)]) },
        mustRefuse: true,
      };
    case "TransferLeader":
      return {
        service: "Admin",
        method: "TransferLeader",
        request: { id: pick(r, ["", "nobody", "x".repeat(300)]) },
        mustRefuse: true,
      };
    case "Join":
      return {
        service: "Admin",
        method: "Join",
        // Never a well-formed join (that adds a learner: a real change): a bad id,
        // a bad address or another cluster's id.
        request: pick(r, [
          { id: pick(r, ["", "bad id!", "x".repeat(300)]), addr: "127.0.0.1:1", cluster_id: "" },
          { id: "n9", addr: pick(r, ["", "nohost", "127.0.0.1:99999"]), cluster_id: "" },
          { id: "n9", addr: "127.0.0.1:1", cluster_id: "another-cluster" },
        ]),
        mustRefuse: true,
      };
    case "AppendEntries":
    case "RequestVote":
      return {
        service: "RaftInternal",
        method: rpc,
        request: {
          cluster_id: pick(r, ["", "another-cluster"]),
          from: pick(r, ["n1", "intruder", ""]),
          messages: Array.from({ length: r.nextInt(4) }, () => bytes(r, r.nextInt(200))),
        },
        mustRefuse: false, // answered ok:false or with a refusal; never applied (revision check)
      };
    default:
      throw new Error(`no generator for ${rpc}`);
  }
}

/**
 * A transaction: comparisons (versions, values, unknown targets), and lists
 * of puts, deletes and gets with bad keys and values, fields a transaction's
 * operation may not carry, a key twice in a list, or more operations than
 * allowed.
 */
function genTxn(r: SeededRandom, version: () => number): Case {
  let ok = true;
  const compare: Msg[] = [];
  for (let i = r.nextInt(4); i > 0; i--) {
    const k = genKey(r);
    const target = pick(r, ["VERSION", "VERSION", "VALUE", 7]);
    const v = genValue(r);
    ok &&= k.ok && target !== 7 && (target !== "VALUE" || v.ok);
    compare.push({
      key: k.key,
      target,
      result: pick(r, ["EQUAL", "NOT_EQUAL", "GREATER", "LESS"]),
      version: version(),
      value: v.value,
    });
  }
  const list = (): Msg[] => {
    const ops: Msg[] = [];
    if (r.nextInt(20) === 0) {
      // One operation too many (small gets: the message stays small).
      ok = false;
      for (let i = 0; i <= 1_000; i++) {
        ops.push({ get: { key: new TextEncoder().encode(`g${i}`) } });
      }
      return ops;
    }
    const seen = new Set<string>();
    const n = r.nextInt(4);
    for (let i = 0; i < n; i++) {
      // Now and then the key of the operation before it again.
      const again = i > 0 && r.nextInt(6) === 0;
      const k = again ? { key: (Object.values(ops[i - 1])[0] as Msg).key, ok: true } : genKey(r);
      const name = String(k.key);
      if (seen.has(name)) ok = false; // a key twice in one list
      seen.add(name);
      ok &&= k.ok;
      switch (r.nextInt(3)) {
        case 0: {
          const v = genValue(r);
          const ttl = pick(r, [0, 0, 3600, 10 * 365 * 86_400 + 1]);
          const put: Msg = {
            key: k.key,
            value: v.value,
            ttl_secs: ttl,
            prev_kv: r.nextInt(2) === 1,
          };
          if (r.nextInt(10) === 0) {
            put.if_version = version();
            ok = false;
          }
          ok &&= v.ok && ttl <= 10 * 365 * 86_400;
          ops.push({ put });
          break;
        }
        case 1:
          ops.push({ delete: { key: k.key, prev_kv: r.nextInt(2) === 1 } });
          break;
        default: {
          const get: Msg = { key: k.key };
          if (r.nextInt(10) === 0) {
            get.version = 1 + r.nextInt(100);
            ok = false;
          }
          ops.push({ get });
        }
      }
    }
    return ops;
  };
  const success = list();
  const failure = list();
  if (compare.length + success.length + failure.length > 1_000) ok = false;
  return {
    service: "KVStore",
    method: "Txn",
    request: {
      compare,
      success,
      failure,
      // Unique ids (a repeated one is answered from its first use).
      request_id: r.nextInt(4) === 0 ? `txn-fuzz-${nextRequestId++}` : "",
    },
    mustRefuse: !ok,
    writes: true,
  };
}

/** The RPCs fuzzed, in order. */
export const fuzzedRpcs = [
  "Get",
  "Put",
  "Delete",
  "Scan",
  "Watch",
  "NodeStatus",
  "Txn",
  "Compact",
  "MemberAdd",
  "MemberRemove",
  "TransferLeader",
  "Join",
  "AppendEntries",
  "RequestVote",
  "InstallSnapshot",
  "peer port",
];

/** Opens a watch, takes its first message or error, then cancels it. */
function watchOnce(client: grpc.Client, request: Msg): Promise<{ code: number; details: string }> {
  return new Promise((resolve) => {
    const call = (client as Msg).Watch(request, { deadline: Date.now() + 8_000 });
    let done = false;
    const finish = (code: number, details: string) => {
      if (done) return;
      done = true;
      resolve({ code, details });
      call.cancel();
    };
    call.on("data", () => finish(0, ""));
    call.on("error", (e: grpc.ServiceError) => finish(e.code, e.details));
    call.on("end", () => finish(0, ""));
  });
}

function snapshotOnce(
  client: grpc.Client,
  r: SeededRandom,
): Promise<{ code: number; details: string; response?: Msg }> {
  return new Promise((resolve) => {
    const call = (client as Msg).InstallSnapshot(
      { deadline: Date.now() + 8_000 },
      (err: grpc.ServiceError | null, response: Msg) =>
        resolve(
          err ? { code: err.code, details: err.details } : { code: 0, details: "", response },
        ),
    );
    call.on("error", () => {});
    const chunks = r.nextInt(4);
    for (let i = 0; i < chunks; i++) {
      call.write({
        cluster_id: pick(r, ["", "another-cluster"]),
        from: "intruder",
        message: bytes(r, r.nextInt(64)),
        revision: r.nextInt(1_000),
        first_record: r.nextInt(10),
        record_count: r.nextInt(10),
        data: bytes(r, r.nextInt(300)),
        crc32: r.nextU32(),
        last: r.nextInt(2) === 1,
        total_records: r.nextInt(10),
        probe: r.nextInt(3) === 0,
      });
    }
    call.end();
  });
}

/** Garbage on the shared node port: the peer preamble with bad frames, or bytes at random. */
async function peerGarbage(port: number, r: SeededRandom): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const parts: Uint8Array[] = [];
    if (r.nextInt(2) === 0) parts.push(new TextEncoder().encode("RKVR"));
    parts.push(bytes(r, r.nextInt(300)));
    if (r.nextInt(3) === 0) parts.push(new Uint8Array([0xff, 0xff, 0xff, 0xff, 2])); // huge frame
    for (const p of parts) await conn.write(p);
    // Read whatever comes back (a refusal) for a moment; the server may close first.
    const buf = new Uint8Array(1024);
    const t = setTimeout(() => conn.close(), 200);
    try {
      await conn.read(buf);
    } catch { /* closed */ }
    clearTimeout(t);
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

/** Runs `perRpc` generated requests of every RPC against a fresh 3-node cluster. */
export async function runFuzz(opts: FuzzOptions): Promise<FuzzResult> {
  const r = new SeededRandom(opts.seed);
  const violations: string[] = [];
  const perRpc = new Map<string, number>();
  const elapsedMs = new Map<string, number>();
  await using cluster = await TestCluster.start(3, { extraArgs: ["--history-revisions", "0"] });
  const leaderId = await cluster.waitForLeader();
  const kv = cluster.client();
  for (let i = 0; i < 20; i++) await kv.put(`fuzz/${i}`, `v${i}`);
  const pkg = loadRustkvdPackage();
  const stubs = new Map<string, grpc.Client[]>();
  for (const svc of ["KVStore", "Admin", "RaftInternal"] as const) {
    const Ctor = pkg[svc] as grpc.ServiceClientConstructor;
    stubs.set(
      svc,
      cluster.nodes.map((n) =>
        new Ctor(n.addr, grpc.credentials.createInsecure(), {
          "grpc.max_send_message_length": 8 * 1024 * 1024,
        })
      ),
    );
  }
  const status = async () => await kv.status({ endpoint: cluster.node(leaderId).addr });
  const startRevision = (await status()).revision;
  let acknowledgedWrites = 0;
  try {
    fuzzing: for (const rpc of fuzzedRpcs) {
      let n = 0;
      const violationsBefore = violations.length;
      const rpcStarted = performance.now();
      for (let i = 0; i < opts.perRpc; i++) {
        if (violations.length >= maxViolations) {
          // A cluster that stopped answering would take the 8 s deadline per request for hours.
          violations.push(`stopped after ${maxViolations} violations (during ${rpc})`);
          break fuzzing;
        }
        const nodeIndex = r.nextInt(cluster.nodes.length);
        if (rpc === "peer port") {
          await peerGarbage(cluster.nodes[nodeIndex].port, r);
          n++;
          continue;
        }
        if (rpc === "InstallSnapshot") {
          const res = await snapshotOnce(stubs.get("RaftInternal")![nodeIndex], r);
          if (res.code !== 0 && !refusals.has(res.code)) {
            violations.push(`InstallSnapshot: status ${res.code} ${res.details}`);
          } else if (res.code === 0 && res.response?.ok) {
            violations.push("InstallSnapshot: garbage chunks were acknowledged as a snapshot");
          }
          n++;
          continue;
        }
        const revision = rpc === "Compact"
          ? (await status()).revision
          : startRevision + acknowledgedWrites;
        const c = genCase(r, rpc, revision);
        const stub = stubs.get(c.service)![nodeIndex];
        const res = c.method === "Watch"
          ? await watchOnce(stub, c.request)
          : await rawCall(stub, c.method, c.request, 8_000);
        n++;
        const what = `${c.method} ${describe(c.request)}`;
        if (res.code !== 0 && !refusals.has(res.code)) {
          violations.push(`${what}: unexpected status ${res.code} (${res.details})`);
        } else if (res.code === 0 && c.mustRefuse) {
          violations.push(`${what}: accepted a request that breaks a limit`);
        } else if (res.code !== 0 && res.details.trim() === "") {
          violations.push(`${what}: refused with status ${res.code} but no message`);
        }
        // A write with a request id takes a revision whatever its outcome (its id's record):
        // also a refused compare-and-set (FAILED_PRECONDITION) and a delete of an absent key.
        const hasId = (c.request.request_id ?? "") !== "";
        const conflicted = hasId && "errorCode" in res && res.errorCode === "Conflict";
        if ((res.code === 0 || conflicted) && c.writes) {
          const resp = (res as { response?: Msg }).response;
          // A transaction takes one revision when it changed a key (a put, or a delete of one),
          // and always when it carries a request id and may write (it commits even an outcome
          // that changes nothing, and the id's record takes a revision); one that only reads
          // never does.
          const mayWrite = c.method === "Txn" &&
            [...c.request.success, ...c.request.failure].some((op: Msg) => op.put || op.delete);
          const txnChanged = c.method === "Txn" &&
            ((c.request.request_id !== "" && mayWrite) ||
              (resp?.responses ?? []).some((o: Msg) => o.put || o.delete?.deleted));
          const recorded = hasId && (c.method === "Put" || c.method === "Delete");
          if (c.method === "Put" || resp?.deleted || txnChanged || recorded) acknowledgedWrites++;
        }
      }
      if (violations.length > violationsBefore) {
        // What the servers logged meanwhile (elections, stalls) explains an unexpected status;
        // attached to the RPC's last violation, so the count stays a count of violations.
        violations[violations.length - 1] += `\nserver logs after fuzzing ${rpc}:\n${
          cluster.dumpOutput(25)
        }`;
      }
      perRpc.set(rpc, n);
      elapsedMs.set(rpc, performance.now() - rpcStarted);
      opts.progress?.(
        `fuzz ${rpc}: ${n} requests in ${((performance.now() - rpcStarted) / 1000).toFixed(1)} s`,
      );
      for (const node of cluster.nodes) {
        if (!node.running) violations.push(`${node.id} is down after fuzzing ${rpc}`);
      }
    }
    // No state change beyond the acknowledged writes, on any node, and the cluster still works.
    const { version } = await kv.put("fuzz/after", "ok");
    const expected = startRevision + acknowledgedWrites + 1;
    if (version !== expected) {
      violations.push(
        `revision moved by ${
          version - startRevision - 1
        } for ${acknowledgedWrites} acknowledged writes`,
      );
    }
  } finally {
    for (const list of stubs.values()) for (const c of list) c.close();
  }
  const crashes = cluster.nodes.reduce((n, node) => n + node.crashes.length, 0);
  for (const node of cluster.nodes) {
    for (const c of node.crashes) {
      violations.push(`crash: ${node.id} exited with ${c.code}\n${cluster.dumpOutput(20)}`);
    }
  }
  return { perRpc, elapsedMs, violations, crashes };
}

function describe(req: Msg): string {
  return JSON.stringify(req, (_k, v) => {
    if (v instanceof Uint8Array) return v.length > 16 ? `<${v.length} bytes>` : Array.from(v);
    if (typeof v === "string" && v.length > 40) return `<${v.length} chars>`;
    return v;
  });
}
