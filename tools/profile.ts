/**
 * Records a V8 CPU profile of a running Deno process started with
 * `--inspect=127.0.0.1:PORT` (Deno 2.9 has no --cpu-prof), through the
 * inspector's Chrome DevTools Protocol, and prints the functions with the
 * most self time, so a hot path can be found without a browser.
 *
 *   deno run -A tools/profile.ts --port 9229 --seconds 5 [--out p.cpuprofile] [--top 40]
 *
 * The .cpuprofile it writes opens in Chrome DevTools or speedscope.
 *
 * @module
 */

import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** Opens the inspector's WebSocket and returns a `send(method, params)` that awaits the result. */
async function connect(port: number) {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
  const ws = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let nextId = 1;
  const waiting = new Map<number, (result: unknown) => void>();
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.id !== undefined) waiting.get(msg.id)?.(msg.result ?? msg.error);
  };
  return {
    send: (method: string, params: Record<string, unknown> = {}) =>
      new Promise<unknown>((resolve) => {
        const id = nextId++;
        waiting.set(id, resolve);
        ws.send(JSON.stringify({ id, method, params }));
      }),
    close: () => ws.close(),
  };
}

function frameName(node: ProfileNode): string {
  const f = node.callFrame;
  const where = f.url
    ? ` ${f.url.replace(/^.*\/(lib|tests|bench|ext|node)\//, "$1/")}:${f.lineNumber + 1}`
    : "";
  return `${f.functionName || "(anonymous)"}${where}`;
}

/** Self time per function (name + location), in milliseconds, largest first. */
export function selfTimes(profile: Profile): { name: string; ms: number; share: number }[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const totals = new Map<string, number>();
  let all = 0;
  for (let i = 0; i < samples.length; i++) {
    const node = byId.get(samples[i]);
    if (!node) continue;
    const us = deltas[i + 1] ?? 0;
    const name = frameName(node);
    totals.set(name, (totals.get(name) ?? 0) + us);
    all += us;
  }
  return [...totals.entries()]
    .map(([name, us]) => ({ name, ms: us / 1000, share: all > 0 ? us / all : 0 }))
    .sort((a, b) => b.ms - a.ms);
}

/**
 * Inclusive time per function (its own samples plus its callees'), counted
 * once per sample even when the function recurses. Async functions show only
 * the synchronous stretches between their awaits.
 */
export function totalTimes(profile: Profile): { name: string; ms: number; share: number }[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const totals = new Map<string, number>();
  let all = 0;
  for (let i = 0; i < samples.length; i++) {
    const us = deltas[i + 1] ?? 0;
    all += us;
    const seen = new Set<string>();
    for (let id: number | undefined = samples[i]; id !== undefined; id = parent.get(id)) {
      const node = byId.get(id);
      if (!node) break;
      const name = frameName(node);
      if (seen.has(name)) continue;
      seen.add(name);
      totals.set(name, (totals.get(name) ?? 0) + us);
    }
  }
  return [...totals.entries()]
    .map(([name, us]) => ({ name, ms: us / 1000, share: all > 0 ? us / all : 0 }))
    .sort((a, b) => b.ms - a.ms);
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string", default: "9229" },
      seconds: { type: "string", default: "5" },
      out: { type: "string" },
      top: { type: "string", default: "40" },
      inclusive: { type: "boolean", default: false },
    },
  });
  const inspector = await connect(Number(values.port));
  await inspector.send("Profiler.enable");
  await inspector.send("Profiler.setSamplingInterval", { interval: 200 });
  await inspector.send("Profiler.start");
  await new Promise((resolve) => setTimeout(resolve, Number(values.seconds) * 1000));
  const { profile } = await inspector.send("Profiler.stop") as { profile: Profile };
  inspector.close();
  if (values.out) await Deno.writeTextFile(values.out, JSON.stringify(profile));
  const rows = values.inclusive ? totalTimes(profile) : selfTimes(profile);
  const totalMs = rows.reduce((n, r) => n + r.ms, 0);
  console.log(`profile: ${totalMs.toFixed(0)} ms sampled over ${values.seconds} s`);
  for (const r of rows.slice(0, Number(values.top))) {
    console.log(
      `${r.ms.toFixed(1).padStart(9)} ms ${(r.share * 100).toFixed(1).padStart(5)} %  ${r.name}`,
    );
  }
}
