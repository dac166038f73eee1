/**
 * A minimal RESP2 client for tests (no dependency, no redis-cli): sends
 * commands as multibulk (or raw bytes), reads replies with a bounded
 * deadline. Bulk strings come back as text; nil as null; errors as
 * `{ error }`.
 *
 * @module
 */

const enc = new TextEncoder();
const dec = new TextDecoder();

/** One decoded reply. */
export type Reply = string | number | null | { error: string } | Reply[];

/** Encodes a command as a RESP multibulk. */
export function encodeCommand(args: Array<string | Uint8Array>): Uint8Array {
  const parts: Uint8Array[] = [enc.encode(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === "string" ? enc.encode(a) : a;
    parts.push(enc.encode(`$${b.length}\r\n`), b, enc.encode("\r\n"));
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** A connection to one RESP listener. */
export class RespTestClient {
  #buf = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;
  #closed = false;

  private constructor(readonly conn: Deno.TcpConn, readonly timeoutMs: number) {}

  /** Connects to host:port. */
  static async connect(addr: string, timeoutMs = 10_000): Promise<RespTestClient> {
    const [hostname, port] = [addr.replace(/:\d+$/, ""), Number(addr.replace(/^.*:/, ""))];
    return new RespTestClient(await Deno.connect({ hostname, port }), timeoutMs);
  }

  /** Sends one command and reads its reply. */
  async call(...args: Array<string | Uint8Array>): Promise<Reply> {
    await this.writeRaw(encodeCommand(args));
    return await this.read();
  }

  /** Sends many commands in one write, then reads all their replies. */
  async pipeline(commands: Array<Array<string | Uint8Array>>): Promise<Reply[]> {
    const parts = commands.map(encodeCommand);
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) {
      all.set(p, off);
      off += p.length;
    }
    await this.writeRaw(all);
    const out: Reply[] = [];
    for (let i = 0; i < commands.length; i++) out.push(await this.read());
    return out;
  }

  /** Writes raw bytes. */
  async writeRaw(bytes: Uint8Array | string): Promise<void> {
    const b = typeof bytes === "string" ? enc.encode(bytes) : bytes;
    let off = 0;
    while (off < b.length) off += await this.conn.write(b.subarray(off));
  }

  async #fill(deadline: number): Promise<boolean> {
    const chunk = new Uint8Array(64 * 1024);
    const left = deadline - Date.now();
    if (left <= 0) throw new Error("RESP test client: timed out waiting for a reply");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), left)));
    const n = await Promise.race([this.conn.read(chunk), timeout]).finally(() =>
      clearTimeout(timer)
    );
    if (n === "timeout") throw new Error("RESP test client: timed out waiting for a reply");
    if (n === null) return false;
    if (this.#end + n > this.#buf.length) {
      const live = this.#end - this.#start;
      const next = live + n > this.#buf.length / 2
        ? new Uint8Array(Math.max(this.#buf.length * 2, live + n))
        : this.#buf;
      next.set(this.#buf.subarray(this.#start, this.#end));
      this.#buf = next;
      this.#start = 0;
      this.#end = live;
    }
    this.#buf.set(chunk.subarray(0, n), this.#end);
    this.#end += n;
    return true;
  }

  /** Reads one reply; throws when the server closed the connection first. */
  async read(): Promise<Reply> {
    const deadline = Date.now() + this.timeoutMs;
    while (true) {
      const r = parseReply(this.#buf.subarray(0, this.#end), this.#start);
      if (r) {
        this.#start = r.end;
        return r.value;
      }
      if (!(await this.#fill(deadline))) throw new Error("RESP test client: connection closed");
    }
  }

  /** True once the server closed the connection (reads until EOF, bounded). */
  async closedByServer(): Promise<boolean> {
    try {
      return !(await this.#fill(Date.now() + this.timeoutMs));
    } catch {
      return true;
    }
  }

  /** Closes the connection. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

function lineEnd(buf: Uint8Array, from: number): number {
  for (let i = from; i + 1 < buf.length; i++) if (buf[i] === 13 && buf[i + 1] === 10) return i;
  return -1;
}

/** Parses one reply at `off`, or undefined when incomplete. */
export function parseReply(
  buf: Uint8Array,
  off: number,
): { value: Reply; end: number } | undefined {
  if (off >= buf.length) return undefined;
  const eol = lineEnd(buf, off);
  if (eol < 0) return undefined;
  const line = dec.decode(buf.subarray(off + 1, eol));
  const next = eol + 2;
  switch (buf[off]) {
    case 0x2b:
      return { value: line, end: next };
    case 0x2d:
      return { value: { error: line }, end: next };
    case 0x3a:
      return { value: Number(line), end: next };
    case 0x24: {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return undefined;
      return { value: dec.decode(buf.subarray(next, next + n)), end: next + n + 2 };
    }
    case 0x2a: {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const items: Reply[] = [];
      let at = next;
      for (let i = 0; i < n; i++) {
        const r = parseReply(buf, at);
        if (!r) return undefined;
        items.push(r.value);
        at = r.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new Error(`RESP test client: bad reply byte ${buf[off]}`);
  }
}
