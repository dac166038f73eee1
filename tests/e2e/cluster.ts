/**
 * Real server processes for end-to-end tests: N nodes of `server.ts` on
 * 127.0.0.1 with ports probed at run time (parallel test files never
 * collide), each with its own data dir under one temp root. Nodes can be
 * killed (SIGKILL), stopped (SIGTERM), paused (SIGSTOP/SIGCONT) and
 * restarted on the same port and data dir. Disposing the cluster kills every
 * process it started, by pid, and removes the temp root — also when the test
 * failed.
 *
 * @module
 */

import { cliPermissions, serverPermissions, serverV8Flags } from "../../tools/permissions.ts";
import { ProxyMesh } from "./proxy.ts";
import type * as grpc from "@grpc/grpc-js";
import { KVClient } from "../../lib/client/kv_client.ts";
import { errorCodeKey } from "../../lib/server/status.ts";

const serverEntry = new URL("../../server.ts", import.meta.url).pathname;
const cliEntry = new URL("../../cli.ts", import.meta.url).pathname;
const dec = new TextDecoder();

/** A gRPC message as proto-loader shapes it. */
// deno-lint-ignore no-explicit-any
export type Msg = any;

/** One raw unary call, answering its status code and message (0 and "" on success). */
export function rawCall(
  client: grpc.Client,
  method: string,
  request: Msg,
  timeoutMs = 5_000,
): Promise<{ code: number; details: string; errorCode?: string; response?: Msg }> {
  return new Promise((resolve) => {
    // deno-lint-ignore no-explicit-any
    (client as any)[method](
      request,
      { deadline: Date.now() + timeoutMs },
      (err: grpc.ServiceError | null, response: Msg) =>
        resolve(
          err
            ? {
              code: err.code,
              details: err.details,
              // rustkvd's own error code (FAILED_PRECONDITION is NotLeader or Conflict).
              errorCode: err.metadata?.get(errorCodeKey)[0]?.toString(),
            }
            : { code: 0, details: "", response },
        ),
    );
  });
}

/** `deno` arguments that run server.ts with exactly the permissions the server needs. */
export function serverDenoArgs(args: string[]): string[] {
  return [
    "run",
    ...serverPermissions,
    ...serverV8Flags,
    serverEntry,
    ...args,
  ];
}

/** `deno` arguments that run cli.ts with exactly the permissions the CLI needs. */
export function cliDenoArgs(args: string[]): string[] {
  return ["run", ...cliPermissions, cliEntry, ...args];
}

/** Runs rustkvd-cli once (killed after `timeoutMs`) and returns its exit code and output. */
export async function runCli(
  args: string[],
  timeoutMs = 20_000,
): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: cliDenoArgs(args),
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

/** The last `lines` lines each node printed, for failure messages. */
export function describeOutput(nodes: TestNode[], lines = 15): string {
  return nodes.map((n) => `--- ${n.id} ---\n${n.output.split("\n").slice(-lines).join("\n")}`)
    .join("\n");
}

/**
 * Polls `fn` every 100 ms until it holds (a throw counts as not yet). On
 * timeout it fails naming `what`, with the last lines of `nodes` when given.
 */
export async function waitFor(
  what: string,
  fn: () => boolean | Promise<boolean>,
  opts: { timeoutMs?: number; nodes?: TestNode[] } = {},
): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  while (Date.now() < deadline) {
    if (await Promise.resolve().then(fn).catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  const dump = opts.nodes ? `\n${describeOutput(opts.nodes, 20)}` : "";
  throw new Error(`timed out waiting for ${what}${dump}`);
}

/** A key's value as the node at `addr` has applied it (serializable: no leader involved). */
export async function localValue(addr: string, key: string): Promise<string | undefined> {
  const c = new KVClient({ endpoints: [addr], timeoutMs: 2_000 });
  try {
    const kv = await c.get(key, { consistency: "serializable" });
    return kv ? dec.decode(kv.value) : undefined;
  } finally {
    c.close();
  }
}

/** The lowest ephemeral port (outgoing connections and binds to port 0 use the range above). */
function lowestEphemeralPort(): number {
  try {
    const low = Number(
      Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim().split(/\s+/)[0],
    );
    if (low > 0) return low;
  } catch { /* not Linux */ }
  return 32768;
}

/** Lowest port `freePort` draws from (below it: well-known services). */
const lowestTestPort = 10_000;

/**
 * Every port this module handed out: a port released by `freePort` is free
 * again until its server binds it, so a second draw in the same test could
 * return it (one in about 2,000 five-node tests gave two nodes one port).
 */
const portsHandedOut = new Set<number>();

/**
 * Binds a free TCP port on 127.0.0.1 for a server that starts later, drawn
 * at random from below the kernel's ephemeral range: a port from that range,
 * released until the server binds it, could meanwhile become the source port
 * of any outgoing connection on the machine (a parallel test's client took a
 * node's RESP port this way). Returns the listener holding it; close it just
 * before the server starts.
 */
export function holdFreePort(): Deno.Listener {
  const span = lowestEphemeralPort() - lowestTestPort;
  if (span > 1_000) {
    for (let attempt = 0; attempt < 200; attempt++) {
      const port = lowestTestPort + Math.floor(Math.random() * span);
      if (portsHandedOut.has(port)) continue;
      try {
        const listener = Deno.listen({ hostname: "127.0.0.1", port });
        portsHandedOut.add(port);
        return listener;
      } catch (e) {
        if (!(e instanceof Deno.errors.AddrInUse)) throw e;
      }
    }
  }
  return Deno.listen({ hostname: "127.0.0.1", port: 0 });
}

/** A free TCP port on 127.0.0.1 for a server that starts soon (see holdFreePort). */
export function freePort(): number {
  const listener = holdFreePort();
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Every server process a TestNode started that has not exited yet. */
const liveChildren = new Set<Deno.ChildProcess>();

/**
 * SIGKILLs every server process still running: for a long-running harness
 * (tests/chaos_main.ts) that is interrupted, so no node outlives it.
 */
export function killAllTestNodes(): number {
  let n = 0;
  for (const child of liveChildren) {
    try {
      child.kill("SIGKILL");
      n++;
    } catch { /* already gone */ }
  }
  liveChildren.clear();
  return n;
}

/** One server process of a test cluster. */
export class TestNode {
  process: Deno.ChildProcess | undefined;
  /** Everything the node wrote to stdout and stderr, for failure reports. */
  output = "";
  /** Exits the test did not ask for (a crash): exit code and when. */
  readonly crashes: Array<{ code: number; signal: string | null }> = [];
  #exited: Promise<Deno.CommandStatus> | undefined;
  #stopping = false;
  /** Where the current run's output starts in `output`. */
  #runStart = 0;
  /**
   * A listener keeping the node's port until its first start (see
   * holdFreePort), for a node that starts long after its port was chosen.
   */
  portHold: Deno.Listener | undefined;

  constructor(
    readonly id: string,
    readonly port: number,
    readonly dataDir: string,
    public args: string[],
    readonly env: Record<string, string> = {},
  ) {}

  /** host:port of the node. */
  get addr(): string {
    return `127.0.0.1:${this.port}`;
  }

  /**
   * The RESP port the current run bound (started with `--resp-addr
   * 127.0.0.1:0`), read from its "serving RESP on" line; undefined before.
   */
  get respPort(): number | undefined {
    const lines = this.output.slice(this.#runStart).matchAll(/serving RESP on [^\s:]+:(\d+)/g);
    let port: number | undefined;
    for (const m of lines) port = Number(m[1]);
    return port;
  }

  /** True while the process runs. */
  get running(): boolean {
    return this.process !== undefined;
  }

  /** Starts the process and waits until it listens (bounded). */
  async start(timeoutMs = 15_000): Promise<void> {
    if (this.process) throw new Error(`${this.id} already running`);
    this.#releasePort();
    const child = new Deno.Command(Deno.execPath(), {
      args: serverDenoArgs(this.args),
      env: this.env,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.process = child;
    liveChildren.add(child);
    this.#stopping = false;
    this.#exited = child.status;
    this.#exited.then((st) => {
      liveChildren.delete(child);
      if (!this.#stopping && this.process === child) {
        this.crashes.push({ code: st.code, signal: st.signal });
        this.process = undefined;
      }
    });
    let listening: () => void = () => {};
    const ready = new Promise<void>((r) => (listening = r));
    // Only this run's output counts: after a restart the old run's line is still there.
    const runStart = this.output.length;
    this.#runStart = runStart;
    const collect = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        this.output += chunk;
        if (this.output.indexOf(`listening on 127.0.0.1:${this.port}`, runStart) >= 0) {
          listening();
        }
      }
    };
    collect(child.stdout).catch(() => {});
    collect(child.stderr).catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.id} did not start within ${timeoutMs} ms:\n${this.output}`)),
        timeoutMs,
      );
    });
    const died = this.#exited.then((s) => {
      throw new Error(`${this.id} exited with code ${s.code} while starting:\n${this.output}`);
    });
    try {
      await Promise.race([ready, timeout, died]);
    } finally {
      clearTimeout(timer);
      died.catch(() => {});
    }
  }

  /** Sends a signal; for SIGKILL/SIGTERM waits (bounded) until the process is gone. */
  async signal(sig: Deno.Signal): Promise<void> {
    this.#releasePort();
    const p = this.process;
    if (!p) return;
    if (sig === "SIGKILL" || sig === "SIGTERM" || sig === "SIGINT") this.#stopping = true;
    try {
      p.kill(sig);
    } catch { /* already gone */ }
    if (sig === "SIGKILL" || sig === "SIGTERM" || sig === "SIGINT") {
      const exited = this.#exited!;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), 5_000)));
      const outcome = await Promise.race([exited, late]);
      clearTimeout(timer);
      if (outcome === "late") {
        try {
          p.kill("SIGKILL");
        } catch { /* gone */ }
        await exited;
      }
      this.process = undefined;
    }
  }

  #releasePort(): void {
    this.portHold?.close();
    this.portHold = undefined;
  }

  /** kill -9. */
  kill(): Promise<void> {
    return this.signal("SIGKILL");
  }

  /** Graceful stop (SIGTERM). */
  stop(): Promise<void> {
    return this.signal("SIGTERM");
  }
}

/** Options of a test cluster. */
export interface TestClusterOptions {
  /** Extra flags for every node (e.g. a faster --election-ms). */
  extraArgs?: string[];
  /** Extra environment for every node (e.g. RUSTKVD_FAILPOINTS). */
  env?: Record<string, string>;
  /** Extra flags for one node (e.g. its own --resp-addr), by node id. */
  nodeArgs?: (id: string) => string[];
  /** Route every directed peer link through a proxy (`cluster.mesh`) for network faults. */
  proxies?: boolean;
  /** Seeded randomness for the proxies' delay jitter. */
  random?: () => number;
}

/** A static cluster (--initial-cluster) of real processes. */
export class TestCluster implements AsyncDisposable {
  readonly nodes: TestNode[] = [];
  #clients: KVClient[] = [];
  /** The link proxies, when started with `proxies: true`. */
  mesh: ProxyMesh | undefined;

  private constructor(readonly root: string) {}

  /** Starts `size` nodes and waits until all listen. */
  static async start(size: number, options: TestClusterOptions = {}): Promise<TestCluster> {
    const root = await Deno.makeTempDir({ prefix: "rustkvd-e2e-" });
    const cluster = new TestCluster(root);
    // Hold the nodes' ports while the proxies bind theirs, so no proxy gets a node's port.
    const held = Array.from({ length: size }, holdFreePort);
    const ports = held.map((l) => (l.addr as Deno.NetAddr).port);
    const initial = ports.map((p, i) => `n${i + 1}=127.0.0.1:${p}`).join(",");
    if (options.proxies) {
      cluster.mesh = new ProxyMesh(
        new Map(ports.map((p, i) => [`n${i + 1}`, p])),
        options.random,
      );
    }
    for (const l of held) l.close();
    const envOf = (id: string): Record<string, string> | undefined => {
      if (!cluster.mesh) return options.env;
      const failpoints = [options.env?.RUSTKVD_FAILPOINTS, cluster.mesh.routesOf(id)]
        .filter((x) => x).join(",");
      return { ...options.env, RUSTKVD_FAILPOINTS: failpoints };
    };
    for (let i = 0; i < size; i++) {
      const id = `n${i + 1}`;
      cluster.nodes.push(
        new TestNode(id, ports[i], `${root}/${id}`, [
          "--node-id",
          id,
          "--addr",
          `127.0.0.1:${ports[i]}`,
          "--data-dir",
          `${root}/${id}`,
          "--initial-cluster",
          initial,
          // A flag is given once (the server refuses repeats): the caller's log level wins.
          ...([...(options.extraArgs ?? []), ...(options.nodeArgs?.(id) ?? [])].includes(
              "--log-level",
            )
            ? []
            : ["--log-level", "info"]),
          ...(options.extraArgs ?? []),
          ...(options.nodeArgs?.(id) ?? []),
        ], envOf(id)),
      );
    }
    try {
      await Promise.all(cluster.nodes.map((n) => n.start()));
    } catch (e) {
      await cluster[Symbol.asyncDispose]();
      throw e;
    }
    return cluster;
  }

  /** The node with `id`. */
  node(id: string): TestNode {
    const n = this.nodes.find((n) => n.id === id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  /** A client for the given nodes (default: all); closed with the cluster. */
  client(ids?: string[], timeoutMs = 5_000): KVClient {
    const endpoints = (ids ? ids.map((id) => this.node(id)) : this.nodes).map((n) => n.addr);
    const c = new KVClient({ endpoints, timeoutMs });
    this.#clients.push(c);
    return c;
  }

  /** Waits (bounded) until the running nodes agree on one leader; returns its id. */
  async waitForLeader(timeoutMs = 10_000, among?: string[]): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    const probe = new KVClient({ endpoints: this.nodes.map((n) => n.addr), timeoutMs: 500 });
    try {
      while (Date.now() < deadline) {
        const running = this.nodes.filter((n) => n.running && (!among || among.includes(n.id)));
        const views = await Promise.all(
          running.map((n) =>
            probe.status({ endpoint: n.addr, timeoutMs: 500 }).catch(() => undefined)
          ),
        );
        const leaders = new Set(
          views.map((v) => v?.role === "leader" ? v.nodeId : undefined).filter((x) => x),
        );
        const agreed = views.every((v) =>
          v && v.leaderId !== "" && v.leaderId === views[0]!.leaderId
        );
        if (leaders.size === 1 && agreed) return [...leaders][0]!;
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      probe.close();
    }
    throw new Error(`no agreed leader within ${timeoutMs} ms\n${this.dumpOutput()}`);
  }

  /** The last lines each node printed (for failure messages). */
  dumpOutput(lines = 15): string {
    return describeOutput(this.nodes, lines);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const c of this.#clients) c.close();
    await Promise.all(this.nodes.map((n) => n.signal("SIGCONT").then(() => n.kill())));
    this.mesh?.close();
    await Deno.remove(this.root, { recursive: true }).catch(() => {});
  }
}
