/**
 * TCP proxies on directed peer links, for partitions, one-way cuts, bridges
 * and slow or flapping links between real server processes.
 *
 * Node A's Raft traffic to node B goes through the proxy of link A->B (A's
 * transport dials it: failpoint `peer-route:B`). The peer channel sends on
 * one connection per direction, so a link carries only A's messages to B and
 * cutting it is a one-way cut. Modes:
 *
 * - `pass`: bytes flow;
 * - `blackhole`: nothing flows and nothing fails — open connections stall
 *   and new ones are accepted but never joined to B (like a partition: TCP
 *   just waits); on healing the stalled bytes flow on, as TCP would deliver
 *   them;
 * - `delay`: every chunk is delivered `delayMs` ± `jitterMs` after it was
 *   read, in order;
 * - `reset`: open connections are closed and new ones are closed at once.
 *
 * Everything listens on 127.0.0.1 port 0; `close()` stops all of it.
 *
 * @module
 */

/** What a link does with traffic. */
export type LinkMode =
  | { kind: "pass" }
  | { kind: "blackhole" }
  | { kind: "delay"; delayMs: number; jitterMs: number }
  | { kind: "reset" };

interface Pipe {
  client: Deno.Conn;
  target: Deno.Conn | undefined;
  closed: boolean;
}

/** The proxy of one directed link. */
export class LinkProxy {
  readonly port: number;
  #listener: Deno.Listener;
  #mode: LinkMode = { kind: "pass" };
  #pipes = new Set<Pipe>();
  #gate: Promise<void> = Promise.resolve();
  #openGate: () => void = () => {};
  #closed = false;
  #random: () => number;
  /** Bytes forwarded (both directions), for reports. */
  bytes = 0;

  constructor(
    readonly from: string,
    readonly to: string,
    readonly targetPort: number,
    random: () => number,
  ) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = (this.#listener.addr as Deno.NetAddr).port;
    this.#random = random;
    this.#accept();
  }

  /** The current mode. */
  get mode(): LinkMode {
    return this.#mode;
  }

  /** Switches the link's behaviour; takes effect at once for open connections too. */
  set(mode: LinkMode): void {
    const was = this.#mode;
    this.#mode = mode;
    if (mode.kind === "blackhole" && was.kind !== "blackhole") {
      this.#gate = new Promise((r) => (this.#openGate = r));
    }
    if (mode.kind !== "blackhole" && was.kind === "blackhole") this.#openGate();
    if (mode.kind === "reset") { for (const p of this.#pipes) this.#closePipe(p); }
  }

  async #accept(): Promise<void> {
    try {
      for await (const client of this.#listener) {
        if (this.#closed || this.#mode.kind === "reset") {
          client.close();
          continue;
        }
        const pipe: Pipe = { client, target: undefined, closed: false };
        this.#pipes.add(pipe);
        this.#join(pipe).catch(() => this.#closePipe(pipe));
      }
    } catch {
      // listener closed
    }
  }

  async #join(pipe: Pipe): Promise<void> {
    await this.#gate; // a blackholed link never joins a new connection to its target
    if (pipe.closed) return;
    pipe.target = await Deno.connect({ hostname: "127.0.0.1", port: this.targetPort });
    if (pipe.closed) {
      pipe.target.close();
      return;
    }
    await Promise.all([
      this.#pump(pipe, pipe.client, pipe.target),
      this.#pump(pipe, pipe.target, pipe.client),
    ]);
  }

  /** Copies `src` to `dst` under the link's mode until either side closes. */
  async #pump(pipe: Pipe, src: Deno.Conn, dst: Deno.Conn): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    let lastDeliverAt = 0;
    let pending: Promise<unknown> = Promise.resolve();
    try {
      for (let i = 0; !pipe.closed && i < 100_000_000; i++) {
        await this.#gate;
        const n = await src.read(buf);
        if (n === null) break;
        await this.#gate; // bytes read just before a cut wait for the heal, like TCP's
        const chunk = buf.slice(0, n);
        this.bytes += n;
        const mode = this.#mode;
        if (mode.kind === "delay") {
          const at = Math.max(
            lastDeliverAt,
            performance.now() + mode.delayMs + (this.#random() * 2 - 1) * mode.jitterMs,
          );
          lastDeliverAt = at;
          const prev = pending;
          pending = (async () => {
            await new Promise((r) => setTimeout(r, Math.max(0, at - performance.now())));
            await prev;
            if (!pipe.closed) await writeAll(dst, chunk);
          })();
        } else {
          await pending;
          await writeAll(dst, chunk);
        }
      }
      await pending;
    } catch {
      // a side closed or reset
    } finally {
      this.#closePipe(pipe);
    }
  }

  #closePipe(pipe: Pipe): void {
    if (pipe.closed) return;
    pipe.closed = true;
    this.#pipes.delete(pipe);
    try {
      pipe.client.close();
    } catch { /* closed */ }
    try {
      pipe.target?.close();
    } catch { /* closed */ }
  }

  /** Stops listening and drops every connection. */
  close(): void {
    this.#closed = true;
    this.#openGate();
    try {
      this.#listener.close();
    } catch { /* closed */ }
    for (const p of [...this.#pipes]) this.#closePipe(p);
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  for (let i = 0; off < data.length && i < 1_000_000; i++) {
    off += await conn.write(data.subarray(off));
  }
}

/** A proxy on every directed link between the nodes of a cluster. */
export class ProxyMesh {
  readonly links = new Map<string, LinkProxy>();

  /** `ports`: node id -> the port the node listens on. */
  constructor(ports: Map<string, number>, random: () => number = Math.random) {
    for (const [from] of ports) {
      for (const [to, port] of ports) {
        if (from !== to) this.links.set(`${from}>${to}`, new LinkProxy(from, to, port, random));
      }
    }
  }

  /** The proxy of link from -> to. */
  link(from: string, to: string): LinkProxy {
    const l = this.links.get(`${from}>${to}`);
    if (!l) throw new Error(`no link ${from}>${to}`);
    return l;
  }

  /** The failpoints that route node `from`'s peer traffic through its proxies. */
  routesOf(from: string): string {
    return [...this.links.values()].filter((l) => l.from === from)
      .map((l) => `peer-route:${l.to}=127.0.0.1:${l.port}`).join(",");
  }

  /** Sets the mode of both directions between every node of `a` and every node of `b`. */
  cut(a: string[], b: string[], mode: LinkMode = { kind: "blackhole" }): void {
    for (const x of a) {
      for (const y of b) {
        this.link(x, y).set(mode);
        this.link(y, x).set(mode);
      }
    }
  }

  /** Cuts `id` off from everyone else, both ways. */
  isolate(id: string): void {
    const others = [...new Set([...this.links.values()].map((l) => l.from))].filter((x) =>
      x !== id
    );
    this.cut([id], others);
  }

  /** Every link back to `pass`. */
  heal(): void {
    for (const l of this.links.values()) l.set({ kind: "pass" });
  }

  /** Closes every proxy. */
  close(): void {
    for (const l of this.links.values()) l.close();
  }
}
