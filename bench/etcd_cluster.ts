/**
 * A fresh local etcd cluster for the side-by-side rows of `deno task bench
 * cluster`: N `etcd` processes from PATH on 127.0.0.1, client and peer ports
 * chosen at run time, data under one temp dir, etcd's defaults otherwise
 * (fsync on every commit, 100 ms heartbeat, 1 s election timeout). Members
 * can be killed with SIGKILL and restarted on the same ports and data.
 * Disposing the cluster kills every process it started, by pid, and removes
 * the temp dir — also when the benchmark failed; an interrupted benchmark
 * (SIGINT, SIGTERM) does the same before it exits, since disposers do not
 * run then and etcd would outlive it.
 *
 * @module
 */

import { EtcdClient } from "./etcd_client.ts";

/** The most output kept per member for failure messages (etcd logs at warn level). */
const maxOutputChars = 64 * 1024;

/**
 * The etcd on PATH and its version ("3.4.23"), or undefined when there is
 * none: the benchmark then runs its rustkvd rows alone.
 */
export async function etcdVersion(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("etcd", { args: ["--version"], stdout: "piped" }).output();
    if (!out.success) return undefined;
    return new TextDecoder().decode(out.stdout).match(/etcd Version:\s*(\S+)/)?.[1] ?? "unknown";
  } catch {
    return undefined;
  }
}

/** One etcd member process: restartable on the same ports and data dir. */
export class EtcdMember {
  process: Deno.ChildProcess | undefined;
  /** The tail of what the member printed, for failure messages. */
  output = "";
  #exited: Promise<Deno.CommandStatus> | undefined;

  constructor(
    readonly name: string,
    readonly clientPort: number,
    readonly peerPort: number,
    readonly dataDir: string,
    readonly args: string[],
  ) {}

  /** host:port of the member's client URL, the form the load generator takes. */
  get addr(): string {
    return `127.0.0.1:${this.clientPort}`;
  }

  /** Starts the process; readiness is the cluster's to check (a member alone has no quorum). */
  start(): void {
    if (this.process) throw new Error(`${this.name} already running`);
    const child = new Deno.Command("etcd", {
      args: this.args,
      // No ETCD_* variables from the caller's shell: the flags alone configure the member.
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.process = child;
    this.#exited = child.status;
    const collect = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        this.output = (this.output + chunk).slice(-maxOutputChars);
      }
    };
    collect(child.stdout).catch(() => {});
    collect(child.stderr).catch(() => {});
  }

  /** kill -9 without waiting: for a process that is about to exit. */
  killNow(): void {
    try {
      this.process?.kill("SIGKILL");
    } catch { /* already gone */ }
  }

  /** kill -9, then waits until the process is gone. */
  async kill(): Promise<void> {
    const p = this.process;
    if (!p) return;
    try {
      p.kill("SIGKILL");
    } catch { /* already gone */ }
    await this.#exited;
    this.process = undefined;
  }
}

/** A static etcd cluster (--initial-cluster) of real processes. */
export class EtcdCluster implements AsyncDisposable {
  readonly members: EtcdMember[] = [];
  readonly #signals: Array<[Deno.Signal, () => void]>;

  private constructor(readonly root: string) {
    this.#signals = (["SIGINT", "SIGTERM"] as const).map((sig) => [sig, () => {
      for (const m of this.members) m.killNow();
      try {
        Deno.removeSync(this.root, { recursive: true });
      } catch { /* best effort: we are exiting */ }
      Deno.exit(sig === "SIGINT" ? 130 : 143);
    }]);
    for (const [sig, handler] of this.#signals) {
      try {
        Deno.addSignalListener(sig, handler);
      } catch { /* a platform without this signal */ }
    }
  }

  /** Starts `size` members and waits (bounded) until they agree on a leader. */
  static async start(size: number, timeoutMs = 30_000): Promise<EtcdCluster> {
    const root = await Deno.makeTempDir({ prefix: "rustkvd-bench-etcd-" });
    const cluster = new EtcdCluster(root);
    try {
      // Hold all ports at once so no two members (or a client and a peer URL) get the same one.
      const held = Array.from(
        { length: 2 * size },
        () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
      );
      const ports = held.map((l) => (l.addr as Deno.NetAddr).port);
      for (const l of held) l.close();
      const peerUrl = (i: number) => `http://127.0.0.1:${ports[2 * i + 1]}`;
      const initial = Array.from({ length: size }, (_, i) => `e${i + 1}=${peerUrl(i)}`).join(",");
      const token = `bench-${crypto.randomUUID().slice(0, 8)}`;
      for (let i = 0; i < size; i++) {
        const name = `e${i + 1}`;
        const clientUrl = `http://127.0.0.1:${ports[2 * i]}`;
        const dataDir = `${root}/${name}`;
        cluster.members.push(
          new EtcdMember(name, ports[2 * i], ports[2 * i + 1], dataDir, [
            `--name=${name}`,
            `--data-dir=${dataDir}`,
            `--listen-client-urls=${clientUrl}`,
            `--advertise-client-urls=${clientUrl}`,
            `--listen-peer-urls=${peerUrl(i)}`,
            `--initial-advertise-peer-urls=${peerUrl(i)}`,
            `--initial-cluster=${initial}`,
            "--initial-cluster-state=new",
            `--initial-cluster-token=${token}`,
            "--logger=zap",
            "--log-outputs=stderr",
            "--log-level=warn",
          ]),
        );
      }
      for (const m of cluster.members) m.start();
      await cluster.waitForLeader(timeoutMs);
    } catch (e) {
      await cluster[Symbol.asyncDispose]();
      throw e;
    }
    return cluster;
  }

  /** The client endpoints (host:port) of every member. */
  get endpoints(): string[] {
    return this.members.map((m) => m.addr);
  }

  /** The member named `name`. */
  member(name: string): EtcdMember {
    const m = this.members.find((m) => m.name === name);
    if (!m) throw new Error(`no etcd member ${name}`);
    return m;
  }

  /**
   * Waits (bounded) until every running member answers Maintenance.Status
   * and all name the same leader, one of them; returns the leader's name.
   */
  async waitForLeader(timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    const probe = new EtcdClient({ endpoints: this.endpoints, timeoutMs: 500 });
    try {
      while (Date.now() < deadline) {
        const running = this.members.filter((m) => m.process);
        const views = await Promise.all(
          running.map((m) => probe.status(m.addr, 500).catch(() => undefined)),
        );
        const leaderId = views[0]?.leaderId;
        const agreed = leaderId !== undefined && leaderId !== "0" &&
          views.every((v) => v?.leaderId === leaderId);
        const leader = agreed ? views.findIndex((v) => v?.memberId === leaderId) : -1;
        if (leader >= 0) return running[leader].name;
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      probe.close();
    }
    throw new Error(`etcd: no agreed leader within ${timeoutMs} ms\n${this.dumpOutput()}`);
  }

  /** The last lines each member printed (for failure messages). */
  dumpOutput(lines = 15): string {
    return this.members.map((m) =>
      `--- ${m.name} ---\n${m.output.split("\n").slice(-lines).join("\n")}`
    ).join("\n");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.members.map((m) => m.kill()));
    await Deno.remove(this.root, { recursive: true }).catch(() => {});
    for (const [sig, handler] of this.#signals) {
      try {
        Deno.removeSignalListener(sig, handler);
      } catch { /* never added */ }
    }
  }
}
