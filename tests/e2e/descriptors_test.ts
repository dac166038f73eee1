/**
 * A node out of file descriptors. Its RESP listener keeps accepting once
 * descriptors are free again (it used to stop for good on the first EMFILE);
 * its main port, whose node:net server stops for good after one, is noticed
 * by the listener's self-probe and the node exits (code 70) so that a
 * supervisor restarts it, instead of serving nobody, its peers included.
 */
import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import { freePort, serverDenoArgs } from "./cluster.ts";

/** A one-node server under `ulimit -n <limit>`, its output collected. */
function lowLimitServer(limit: number, root: string) {
  const port = freePort();
  const respPort = freePort();
  const args = serverDenoArgs([
    "--node-id",
    "n1",
    "--addr",
    `127.0.0.1:${port}`,
    "--resp-addr",
    `127.0.0.1:${respPort}`,
    "--data-dir",
    `${root}/n1`,
  ]).map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
  const child = new Deno.Command("bash", {
    args: ["-c", `ulimit -n ${limit} && exec '${Deno.execPath()}' ${args}`],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  const dec = new TextDecoder();
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) output += dec.decode(chunk);
  };
  const reading = Promise.all([collect(child.stdout), collect(child.stderr)]);
  return { port, respPort, child, output: () => output, reading };
}

/** Opens up to `n` connections to `port` (some may fail), held until closed. */
async function flood(port: number, n: number): Promise<Deno.TcpConn[]> {
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < n; i++) {
    try {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    } catch { /* the backlog is full */ }
  }
  return conns;
}

async function until(what: string, ok: () => boolean | Promise<boolean>, ms: number) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function ping(port: number): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode("PING\r\n"));
    const buf = new Uint8Array(64);
    const n = await Promise.race([
      conn.read(buf),
      new Promise<null>((r) => setTimeout(() => r(null), 2_000)),
    ]);
    return n === null ? "" : new TextDecoder().decode(buf.subarray(0, n));
  } finally {
    conn.close();
  }
}

Deno.test({
  name:
    "out of file descriptors: RESP accepts again once they are free; a stuck main port stops the node",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "rustkvd-fds-" });
    const server = lowLimitServer(96, root);
    let held: Deno.TcpConn[] = [];
    try {
      await until("the node to listen", () => server.output().includes("serving RESP"), 30_000);
      assertEquals(await ping(server.respPort), "+PONG\r\n");
      // More RESP clients than the node has descriptors: its accepts fail meanwhile.
      held = await flood(server.respPort, 150);
      await new Promise((r) => setTimeout(r, 500));
      for (const c of held) c.close();
      held = [];
      await until(
        "a RESP client to be served again",
        async () => (await ping(server.respPort).catch(() => "")) === "+PONG\r\n",
        10_000,
      );
      assertTrue(server.output().includes("RESP accept failed; retrying"), server.output());
      // The main port meets the same: its server stops accepting, and the node stops.
      held = await flood(server.port, 150);
      await new Promise((r) => setTimeout(r, 500));
      for (const c of held) c.close();
      held = [];
      const status = await Promise.race([
        server.child.status,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 25_000)),
      ]);
      await server.reading;
      assertEquals(status?.code, 70, server.output());
      assertTrue(server.output().includes("stopped accepting connections"), server.output());
    } finally {
      for (const c of held) c.close();
      try {
        server.child.kill("SIGKILL");
      } catch { /* exited */ }
      await server.child.status;
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});
