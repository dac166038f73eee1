/**
 * Specification tests for the linearizability checker: hand-written histories
 * that must pass, one history per anomaly that must be caught, and a seeded
 * simulation of a linearizable store (16 clients, 10,000 operations) whose
 * history must check quickly — and fail once one read is made stale.
 * `SEED=<n>` replays the randomized tests.
 *
 * @module
 */

import { assertEquals, assertThrows, assertTrue } from "../../lib/common/test_helpers.ts";
import { SeededRandom, testSeed } from "../../lib/common/random.ts";
import {
  check,
  type CheckResult,
  type CommittedWrite,
  describeOp,
  type HistoryOp,
  type KvOp,
  MalformedHistoryError,
  settleFromLog,
  type ViolationCheck,
} from "./linearizability.ts";

// ---------------------------------------------------------------- builders

type Span = [invoke: number, ret: number];

/** An operation by `client` over [invoke, return]; `ret` Infinity = unknown outcome. */
function op(client: number, [invoke, ret]: Span, body: KvOp): HistoryOp {
  return { clientId: client, invokeTime: invoke, returnTime: ret, ...body };
}
const put = (c: number, s: Span, key: string, value: string, version?: number) =>
  op(c, s, { kind: "put", key, value, result: version === undefined ? undefined : { version } });
const get = (c: number, s: Span, key: string, value: string | null, version = 0) =>
  op(c, s, {
    kind: "get",
    key,
    result: value === null ? { found: false, version: 0 } : { found: true, value, version },
  });
const getAt = (c: number, s: Span, key: string, at: number, value: string | null, version = 0) =>
  op(c, s, {
    kind: "get",
    key,
    atVersion: at,
    result: value === null ? { found: false, version: 0 } : { found: true, value, version },
  });
const del = (c: number, s: Span, key: string, deleted?: boolean, version = 0) =>
  op(c, s, {
    kind: "delete",
    key,
    result: deleted === undefined ? undefined : { deleted, version },
  });
const casOk = (
  c: number,
  s: Span,
  key: string,
  value: string,
  ifVersion: number,
  version: number,
) => op(c, s, { kind: "cas", key, value, ifVersion, result: { ok: true, version } });
const casConflict = (
  c: number,
  s: Span,
  key: string,
  value: string,
  ifVersion: number,
  currentVersion: number,
) => op(c, s, { kind: "cas", key, value, ifVersion, result: { ok: false, currentVersion } });

function assertLinearizable(history: HistoryOp[]): void {
  const result = check(history);
  assertTrue(result.ok === true, `expected linearizable, got ${render(result)}`);
}

function assertViolation(history: HistoryOp[], checkName: ViolationCheck, mentions?: string) {
  const result = check(history);
  assertTrue(result.ok === false, `expected a ${checkName} violation, got ${render(result)}`);
  assertEquals(result.check, checkName, `wrong check: ${result.reason}`);
  if (mentions !== undefined) {
    assertTrue(result.reason.includes(mentions), `reason lacks ${mentions}: ${result.reason}`);
  }
  return result;
}

function render(result: CheckResult): string {
  return result.ok === false ? `${result.check}: ${result.reason}` : JSON.stringify(result);
}

// ---------------------------------------------------------------- histories that pass

Deno.test("a sequential history of every operation kind is linearizable", () => {
  assertLinearizable([
    put(1, [0, 1], "x", "a", 1),
    get(1, [2, 3], "x", "a", 1),
    put(2, [4, 5], "y", "b", 2),
    casOk(1, [6, 7], "x", "c", 1, 3),
    casConflict(2, [8, 9], "x", "d", 1, 3),
    get(2, [10, 11], "x", "c", 3),
    del(1, [12, 13], "x", true, 4),
    get(1, [14, 15], "x", null),
    del(2, [16, 17], "x", false, 4),
    casOk(2, [18, 19], "x", "e", 0, 5),
    getAt(1, [20, 21], "x", 2, "a", 1),
    getAt(1, [22, 23], "x", 4, null),
    getAt(2, [24, 25], "y", 5, "b", 2),
    get(1, [26, 27], "missing", null),
  ]);
});

Deno.test("concurrent overlapping operations linearize in any order the results allow", () => {
  assertLinearizable([
    put(1, [0, 10], "x", "a", 1),
    put(2, [1, 9], "x", "b", 2),
    // Overlapping reads may see either write, but not go back from b to a.
    get(3, [2, 4], "x", "a", 1),
    get(4, [3, 8], "x", "b", 2),
    get(3, [5, 12], "x", "b", 2),
    // A read that overlaps the first write may also miss it.
    get(5, [0, 1], "x", null),
  ]);
});

Deno.test("an unknown-outcome write may have happened, at any time after its invocation", () => {
  assertLinearizable([
    put(1, [0, 1], "x", "a", 1),
    put(2, [2, Infinity], "x", "b"),
    get(3, [3, 4], "x", "a", 1),
    get(3, [50, 51], "x", "b", 2),
    put(1, [60, 61], "x", "c", 3),
  ]);
});

Deno.test("an unknown-outcome write may never have happened", () => {
  assertLinearizable([
    put(1, [0, 1], "x", "a", 1),
    put(2, [2, Infinity], "x", "b"),
    del(4, [3, Infinity], "x"),
    op(5, [3, Infinity], { kind: "cas", key: "x", value: "z", ifVersion: 1 }),
    get(3, [10, 11], "x", "a", 1),
    put(1, [20, 21], "x", "c", 2),
    get(3, [30, 31], "x", "c", 2),
    op(3, [40, Infinity], { kind: "get", key: "x" }),
  ]);
});

Deno.test("unknown-outcome writes are tried only when the acknowledged operations need them", () => {
  // 40 open puts that never took effect, among acknowledged writes and reads:
  // tried only after the known-outcome candidates, they are never placed.
  const history: HistoryOp[] = [];
  let t = 0;
  for (let i = 0; i < 40; i++) {
    history.push(put(100 + i, [t, Infinity], "x", `lost${i}`));
    history.push(put(1, [t + 1, t + 2], "x", `v${i}`, i + 1));
    history.push(get(2, [t + 3, t + 4], "x", `v${i}`, i + 1));
    t += 5;
  }
  const result = check(history);
  assertTrue(result.ok === true, render(result));
  // One attempt per acknowledged operation: no open write was even tried
  // (trying them in time order measured 1,760 attempts here).
  assertEquals(result.stats.steps, 120);
});

// ---------------------------------------------------------------- anomalies that are caught

Deno.test("a stale read is caught, with the longest partial linearization", () => {
  const result = assertViolation(
    [
      put(1, [0, 1], "x", "a", 1),
      put(1, [2, 3], "x", "b", 2),
      get(2, [4, 5], "x", "a", 1),
    ],
    "per-key",
    '#2 client 2 get("x") -> "a" @1',
  );
  // The search places put a, then cannot place put b before b returns without
  // stranding the read, which needs version 1.
  assertEquals(result.key, "x");
  assertEquals(result.partial, {
    linearized: [0],
    stuck: 1,
    state: 'holding "a" @1',
    stranded: [2],
  });
  assertTrue(result.opIds.includes(2));
});

Deno.test("a lost write is caught: an acknowledged put invisible to a later read", () => {
  assertViolation([put(1, [0, 1], "x", "a", 1), get(2, [2, 3], "x", null)], "per-key");
  assertViolation(
    [put(1, [0, 1], "x", "a", 1), put(1, [2, 3], "x", "b", 2), get(2, [4, 5], "x", "a", 1)],
    "per-key",
  );
});

Deno.test("a read of a value that nobody wrote is caught", () => {
  assertViolation([put(1, [0, 1], "x", "a", 1), get(2, [2, 3], "x", "ghost", 1)], "per-key");
  assertViolation([put(1, [0, 1], "x", "a", 1), get(2, [2, 3], "y", "a", 1)], "per-key");
});

Deno.test("a duplicated write is caught: a put applied twice", () => {
  // Re-applied with a new version after being overwritten.
  assertViolation(
    [put(1, [0, 1], "x", "a", 1), put(2, [2, 3], "x", "b", 2), get(3, [4, 5], "x", "a", 3)],
    "per-key",
  );
  // The value reappears after an overwrite (with its original version).
  assertViolation(
    [
      put(1, [0, 1], "x", "a", 1),
      put(2, [2, 3], "x", "b", 2),
      get(3, [4, 5], "x", "b", 2),
      get(3, [6, 7], "x", "a", 1),
    ],
    "per-key",
  );
});

Deno.test("a write that appears before its invocation is caught", () => {
  assertViolation([get(2, [0, 1], "x", "a", 1), put(1, [2, 3], "x", "a", 1)], "per-key");
  // Also when the write's outcome is unknown: it cannot take effect before it was sent.
  assertViolation([get(2, [0, 1], "x", "a", 1), put(1, [2, Infinity], "x", "a")], "per-key");
});

Deno.test("a non-monotonic version is caught, on one key and across keys", () => {
  assertViolation([put(1, [0, 1], "x", "a", 5), put(1, [2, 3], "x", "b", 3)], "per-key");
  assertViolation(
    [put(1, [0, 1], "x", "a", 5), put(2, [2, 3], "y", "b", 3)],
    "revision-order",
    "revision 3 is not greater",
  );
  // Across keys when the first write's effect was only proven by a read.
  assertViolation(
    [
      put(1, [0, 100], "x", "a", 2),
      get(2, [10, 20], "x", "a", 2),
      put(3, [30, 40], "y", "b", 1),
    ],
    "revision-order",
  );
  // A delete that found nothing reports the revision: later writes must exceed it.
  assertViolation([del(1, [0, 1], "x", false, 7), put(2, [2, 3], "y", "a", 6)], "revision-order");
  assertViolation(
    [put(1, [0, 1], "x", "a", 1), put(1, [2, 3], "y", "b", 1)],
    "unique-versions",
  );
});

Deno.test("a CAS that succeeded against the wrong version is caught", () => {
  assertViolation(
    [
      put(1, [0, 1], "x", "a", 1),
      put(1, [2, 3], "x", "b", 2),
      casOk(2, [4, 5], "x", "c", 1, 3),
    ],
    "per-key",
  );
  // And a CAS on an absent key that claims a conflict with the wrong version.
  assertViolation([casConflict(1, [0, 1], "x", "a", 4, 2)], "per-key");
  // And a conflict reported though the versions matched.
  assertViolation([put(1, [0, 1], "x", "a", 1), casConflict(1, [2, 3], "x", "b", 1, 1)], "per-key");
});

Deno.test("version reads must return the newest write at or below their version", () => {
  const writes = [
    put(1, [0, 1], "x", "a", 1),
    put(1, [2, 3], "x", "b", 3),
    del(1, [4, 5], "x", true, 4),
  ];
  assertLinearizable([...writes, getAt(2, [6, 7], "x", 2, "a", 1), getAt(2, [8, 9], "x", 4, null)]);
  assertViolation([...writes, getAt(2, [6, 7], "x", 3, "a", 1)], "version-read", "missed");
  assertViolation([...writes, getAt(2, [6, 7], "x", 4, "b", 3)], "version-read", "missed");
  assertViolation([...writes, getAt(2, [6, 7], "x", 1, null)], "version-read", "found nothing");
  assertViolation([...writes, getAt(2, [6, 7], "x", 3, "zz", 3)], "version-read", "another");
  // Served for revision 3 before the write that made revision 3 was sent (check 3).
  assertViolation(
    [put(1, [0, 1], "x", "a", 1), getAt(2, [2, 3], "x", 3, "a", 1), put(1, [4, 5], "y", "b", 3)],
    "revision-order",
    "had shown revision 3",
  );
  assertViolation(
    [put(1, [0, 1], "x", "a", 1), getAt(2, [2, 3], "x", 9, "a", 1)],
    "version-read",
    "beyond every write",
  );
});

// ---------------------------------------------------------------- settling, budget, input rules

Deno.test("settling from the committed log resolves open writes and finds lost acknowledged ones", () => {
  const history = [
    put(1, [0, 1], "x", "a", 1),
    { ...put(2, [2, Infinity], "x", "b"), requestId: "r-b" },
    put(3, [2, Infinity], "x", "c"),
    del(4, [3, Infinity], "x"),
    put(1, [5, 6], "y", "d", 3),
    get(5, [10, 11], "x", "b", 2),
  ];
  const log: CommittedWrite[] = [
    { kind: "put", key: "x", value: "a", version: 1 },
    { kind: "put", key: "x", value: "b", version: 2, requestId: "r-b" },
  ];
  const settled = settleFromLog(history, log);
  assertEquals(
    [settled.happened, settled.notHappened, settled.unresolved],
    [1, 1, 1],
  );
  assertEquals(settled.ackedMissing.map((o) => o.kind === "put" && o.value), ["d"]);
  assertEquals(settled.history.length, 5, "the put of c never happened and is dropped");
  assertTrue(describeOp(settled.history[1]).includes("@2 (settled)"));
  assertLinearizable(settled.history);
  // A settled write must still fit: claiming b got version 5 contradicts the read of b @2.
  const wrong = settleFromLog(history, [log[0], { ...log[1], version: 5 }]);
  assertTrue(check(wrong.history).ok === false);
});

Deno.test("the time budget ends the search with a timeout, never a pass", () => {
  let fakeMs = 0;
  const now = () => fakeMs++;
  const history = simulate(new SeededRandom(1), { clients: 16, ops: 3000, keys: 4 }).history;
  const result = check(history, { timeoutMs: 5, now });
  assertEquals(result.ok, "timeout");
  assertThrows(() => check(history, { timeoutMs: 5 }), RangeError, "now()");
  assertEquals(check(history, { timeoutMs: 60_000, now: () => performance.now() }).ok, true);
});

Deno.test("histories that break the recording rules are refused, not judged", () => {
  assertThrows(
    () => check([put(1, [0, 5], "x", "a", 1), put(1, [3, 6], "x", "b", 2)]),
    MalformedHistoryError,
    "two requests in flight",
  );
  assertThrows(
    () => check([put(1, [0, 1], "x", "a", 1), put(2, [0, 1], "y", "a", 2)]),
    MalformedHistoryError,
    "unique",
  );
  assertThrows(() => check([put(1, [5, 1], "x", "a", 1)]), MalformedHistoryError, "precedes");
  assertThrows(() => check([put(1, [0, 1], "x", "a")]), MalformedHistoryError, "needs its result");
});

// ---------------------------------------------------------------- randomized

interface SimOptions {
  clients: number;
  ops: number;
  keys: number;
  /** Probability that a write's response is lost (outcome unknown to the client). */
  unknownRate?: number;
}

interface Simulated {
  history: HistoryOp[];
  log: CommittedWrite[];
}

/**
 * A linearizable store, simulated: each operation takes effect at a random
 * instant between its invocation and its return, in one global order, with
 * one revision counter. Clients issue one request at a time with random gaps.
 */
function simulate(rng: SeededRandom, o: SimOptions): Simulated {
  type Cell = { value: string | null; version: number };
  const timeline = new Map<string, Cell[]>();
  const latest = (key: string): Cell => {
    const t = timeline.get(key);
    return t === undefined ? { value: null, version: 0 } : t[t.length - 1];
  };
  let revision = 0;
  const log: CommittedWrite[] = [];
  const history: HistoryOp[] = [];
  const write = (key: string, value: string | null): number => {
    revision++;
    let t = timeline.get(key);
    if (t === undefined) timeline.set(key, t = []);
    t.push({ value, version: revision });
    log.push(
      value === null
        ? { kind: "delete", key, version: revision }
        : { kind: "put", key, value, version: revision },
    );
    return revision;
  };

  // Pending events: [time, kind, client]; each client has at most one.
  type Pending = {
    time: number;
    what: "invoke" | "effect" | "return";
    client: number;
    op?: HistoryOp;
    answered?: boolean;
  };
  const pending: Pending[] = [];
  for (let c = 0; c < o.clients; c++) {
    pending.push({ time: rng.nextInt(10), what: "invoke", client: c });
  }
  let issued = 0;
  let valueSeq = 0;
  while (pending.length > 0) {
    let at = 0;
    for (let i = 1; i < pending.length; i++) {
      if (pending[i].time < pending[at].time) at = i;
    }
    const ev = pending.splice(at, 1)[0];
    if (ev.what === "invoke") {
      if (issued === o.ops) continue;
      issued++;
      const key = `k${rng.nextInt(o.keys)}`;
      const roll = rng.nextFloat();
      let body: KvOp;
      if (roll < 0.4) body = { kind: "get", key };
      else if (roll < 0.5) {
        body = { kind: "get", key, atVersion: revision === 0 ? 0 : 1 + rng.nextInt(revision) };
      } else if (roll < 0.75) body = { kind: "put", key, value: `v${valueSeq++}` };
      else if (roll < 0.83) body = { kind: "delete", key };
      else {
        const current = latest(key);
        const ifVersion = rng.nextFloat() < 0.6
          ? (current.value === null ? 0 : current.version)
          : rng.nextInt(revision + 1);
        body = { kind: "cas", key, value: `v${valueSeq++}`, ifVersion };
      }
      if (body.kind === "get" && body.atVersion === 0) body = { kind: "get", key };
      const duration = 1 + rng.nextInt(40);
      const invoke = ev.time;
      const record = op(ev.client, [invoke, invoke + duration], body);
      const unknown = body.kind !== "get" && rng.nextFloat() < (o.unknownRate ?? 0);
      const happens = !unknown || rng.nextFloat() < 0.5;
      if (unknown) record.returnTime = Infinity;
      history.push(record);
      if (happens) {
        pending.push({
          time: invoke + rng.nextFloat() * duration,
          what: "effect",
          client: ev.client,
          op: record,
          answered: !unknown,
        });
      }
      // A client whose request timed out gives up on it and moves on.
      pending.push({ time: invoke + duration + rng.nextInt(5), what: "invoke", client: ev.client });
      continue;
    }
    // The effect: apply at this instant and record the result (unless the response is lost).
    const r = ev.op!;
    const body = r as KvOp;
    const cur = latest(body.key);
    switch (body.kind) {
      case "get": {
        if (body.atVersion === undefined) {
          body.result = cur.value === null
            ? { found: false, version: 0 }
            : { found: true, value: cur.value, version: cur.version };
        } else {
          const cells = (timeline.get(body.key) ?? []).filter((c) => c.version <= body.atVersion!);
          const cell = cells[cells.length - 1];
          body.result = cell === undefined || cell.value === null
            ? { found: false, version: 0 }
            : { found: true, value: cell.value, version: cell.version };
        }
        break;
      }
      case "put": {
        const version = write(body.key, body.value);
        if (ev.answered) body.result = { version };
        break;
      }
      case "delete": {
        const deleted = cur.value !== null;
        const version = deleted ? write(body.key, null) : revision;
        if (ev.answered) body.result = { deleted, version };
        break;
      }
      case "cas": {
        const currentVersion = cur.value === null ? 0 : cur.version;
        if (currentVersion === body.ifVersion) {
          const version = write(body.key, body.value);
          if (ev.answered) body.result = { ok: true, version };
        } else if (ev.answered) body.result = { ok: false, currentVersion };
        break;
      }
    }
  }
  return { history, log };
}

/** Makes one latest-value read return a value that a completed later write had replaced. */
function makeOneReadStale(rng: SeededRandom, history: HistoryOp[]): number {
  const candidates: { read: number; stale: HistoryOp }[] = [];
  const acked = history.filter((h) =>
    h.returnTime !== Infinity &&
    ((h.kind === "put" && h.result !== undefined) || (h.kind === "cas" && h.result?.ok === true))
  );
  history.forEach((h, i) => {
    if (h.kind !== "get" || h.atVersion !== undefined || h.result === undefined) return;
    const before = acked.filter((w) => w.key === h.key && w.returnTime < h.invokeTime);
    if (before.length < 2) return;
    const version = (w: HistoryOp) => (w.result as { version: number }).version;
    const newest = Math.max(...before.map(version));
    const older = before.filter((w) => version(w) < newest);
    if (older.length > 0) candidates.push({ read: i, stale: older[rng.nextInt(older.length)] });
  });
  assertTrue(candidates.length > 0, "no read can be made stale");
  const { read, stale } = candidates[rng.nextInt(candidates.length)];
  const value = (stale as { value: string }).value;
  (history[read] as { result: unknown }).result = {
    found: true,
    value,
    version: (stale.result as { version: number }).version,
  };
  return read;
}

Deno.test("a simulated linearizable store: 10,000 operations from 16 clients check OK in seconds", () => {
  const seed = testSeed();
  console.log(`SEED=${seed}`);
  const { history } = simulate(new SeededRandom(seed), { clients: 16, ops: 10_000, keys: 8 });
  assertEquals(history.length, 10_000);
  const started = performance.now();
  const result = check(history, { timeoutMs: 30_000, now: () => performance.now() });
  const elapsedMs = performance.now() - started;
  console.log(
    `checked ${history.length} ops in ${elapsedMs.toFixed(0)} ms: ${JSON.stringify(result)}`,
  );
  assertTrue(result.ok === true, `SEED=${seed}: ${render(result)}`);
  assertTrue(elapsedMs < 10_000, `SEED=${seed}: took ${elapsedMs} ms`);

  const rng = new SeededRandom(seed ^ 0x5eed);
  const read = makeOneReadStale(rng, history);
  const mutated = check(history, { timeoutMs: 30_000, now: () => performance.now() });
  console.log(`stale read injected at #${read}: ${render(mutated)}`);
  assertTrue(mutated.ok === false, `SEED=${seed}: the stale read at #${read} was not caught`);
  assertEquals(mutated.check, "per-key");
  assertEquals(mutated.key, history[read].key, "the violation is on the mutated read's key");
});

Deno.test("a simulated store with lost responses checks OK, unsettled and settled from the log", () => {
  const seed = testSeed();
  console.log(`SEED=${seed}`);
  const { history, log } = simulate(new SeededRandom(seed), {
    clients: 16,
    ops: 4_000,
    keys: 8,
    unknownRate: 0.01,
  });
  const open = history.filter((h) => h.returnTime === Infinity).length;
  let started = performance.now();
  const raw = check(history, { timeoutMs: 30_000, now: () => performance.now() });
  const rawMs = performance.now() - started;
  const settled = settleFromLog(history, log);
  started = performance.now();
  const result = check(settled.history, { timeoutMs: 30_000, now: () => performance.now() });
  console.log(
    `${open} open writes; unsettled: ${raw.ok} in ${rawMs.toFixed(0)} ms; settled ` +
      `(${settled.happened} happened, ${settled.notHappened} not, ${settled.unresolved} unresolved): ` +
      `${result.ok} in ${(performance.now() - started).toFixed(0)} ms`,
  );
  assertTrue(open > 0);
  assertTrue(raw.ok === true, `SEED=${seed}: ${render(raw)}`);
  assertTrue(result.ok === true, `SEED=${seed}: ${render(result)}`);
  assertEquals(settled.ackedMissing, []);
});
