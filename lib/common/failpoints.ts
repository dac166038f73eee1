/**
 * Failpoints: named places where tests make the real code fail on purpose
 * (a broken transfer, a crash between two writes), switched on through the
 * environment of a test's server process:
 *
 *   RUSTKVD_FAILPOINTS="snapshot-send-break-after=100,other"
 *
 * In use: `snapshot-send-break-after=N` (break the first snapshot transfer
 * after N records), `snapshot-receive-refuse` (a receiver refuses every
 * snapshot transfer), `crash-after-log-write` / `crash-before-apply` (see
 * crashAt), `apply-stall=INDEX:MS` (the first apply reaching INDEX waits MS),
 * `walk-page-pause=MS` (a RESP walk over many scan pages, KEYS or DBSIZE,
 * waits MS after each page, as if its pages came from disk), and
 * `peer-route:<id>=host:port` (send this node's Raft traffic for `<id>` to a
 * proxy: the fault tests' link proxies).
 *
 * Unset, every failpoint is off and costs one map lookup.
 *
 * @module
 */

let parsed: Map<string, string> | undefined;

function failpoints(): Map<string, string> {
  if (!parsed) {
    parsed = new Map();
    let spec = "";
    try {
      spec = Deno.env.get("RUSTKVD_FAILPOINTS") ?? "";
    } catch {
      spec = ""; // no env permission: failpoints stay off
    }
    for (const part of spec.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
      const eq = part.indexOf("=");
      parsed.set(eq < 0 ? part : part.slice(0, eq), eq < 0 ? "" : part.slice(eq + 1));
    }
  }
  return parsed;
}

/** The value of failpoint `name` ("" when set without a value), or undefined when off. */
export function failpoint(name: string): string | undefined {
  return failpoints().get(name);
}

/** Switches failpoints for the current process (tests in one process). */
export function setFailpointsForTest(spec: Record<string, string>): void {
  parsed = new Map(Object.entries(spec));
}

/**
 * Crash counters: `crashAt("name")` ends the process abruptly (no shutdown,
 * no fsync) on the N-th call when the environment sets `name=N`, modelling a
 * kill -9 at that point of the durable path.
 */
const crashCalls = new Map<string, number>();

/** Ends the process on the N-th call when failpoint `name=N` is set; otherwise does nothing. */
export function crashAt(name: string): void {
  const spec = failpoint(name);
  if (spec === undefined) return;
  const n = (crashCalls.get(name) ?? 0) + 1;
  crashCalls.set(name, n);
  if (n === Number(spec)) {
    console.error(`failpoint ${name}: crashing on call ${n}`);
    Deno.exit(137);
  }
}
