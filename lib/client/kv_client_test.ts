import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { KVError } from "../common/errors.ts";
import { KVClient } from "./kv_client.ts";

Deno.test("kv client: a write whose first attempt timed out fails as Timeout (maybe applied), not unreachable", async () => {
  // The endpoint takes one call and never answers, then goes away: later attempts are refused.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  let held: Deno.Conn | undefined;
  const serving = (async () => {
    held = await listener.accept();
    listener.close();
    const buf = new Uint8Array(65_536);
    try {
      while ((await held.read(buf)) !== null) { /* read and ignore */ }
    } catch { /* closed */ }
  })();
  const dropAfter = setTimeout(() => held?.close(), 700);
  const client = new KVClient({ endpoints: [`127.0.0.1:${port}`], timeoutMs: 1_500 });
  try {
    let error: unknown;
    try {
      await client.put("k", "v", { requestId: "r1" });
    } catch (e) {
      error = e;
    }
    assertTrue(error instanceof KVError, String(error));
    assertEquals((error as KVError).code, "Timeout");
    assertTrue(
      (error as Error).message.includes("may have been applied"),
      (error as Error).message,
    );
  } finally {
    clearTimeout(dropAfter);
    client.close();
    try {
      held?.close();
    } catch { /* closed */ }
    await serving;
  }
});

Deno.test("kv client: a scan given a prefix and a range is refused, as the node refuses it", async () => {
  const client = new KVClient({ endpoints: ["127.0.0.1:1"], timeoutMs: 500 });
  try {
    for (const range of [{ start: "a" }, { end: "b2" }]) {
      let error: unknown;
      try {
        for await (const _ of client.scan({ prefix: "b", ...range })) break;
      } catch (e) {
        error = e;
      }
      assertTrue(error instanceof KVError, String(error));
      assertEquals((error as KVError).code, "InvalidArgument");
      assertTrue((error as Error).message.includes("not both"), (error as Error).message);
    }
  } finally {
    client.close();
  }
});

Deno.test("kv client: a watch no node serves for giveUpAfterMs ends with the endpoints it tried", async () => {
  // One endpoint refuses connections, the other takes them and never answers.
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const serving = (async () => {
    try {
      for await (const c of silent) held.push(c);
    } catch { /* closed */ }
  })();
  const refusing = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const refusedPort = (refusing.addr as Deno.NetAddr).port;
  refusing.close();
  const client = new KVClient({
    endpoints: [`127.0.0.1:${refusedPort}`, `127.0.0.1:${(silent.addr as Deno.NetAddr).port}`],
    timeoutMs: 500,
  });
  const started = Date.now();
  try {
    let error: unknown;
    try {
      for await (const _ of client.watch({ key: "k", giveUpAfterMs: 800 })) break;
    } catch (e) {
      error = e;
    }
    assertTrue(error instanceof KVError, String(error));
    assertEquals((error as KVError).code, "NoQuorum");
    const message = (error as Error).message;
    assertTrue(message.includes(`127.0.0.1:${refusedPort} (connection refused)`), message);
    assertTrue(message.includes("(no answer in time)"), message);
    assertTrue(Date.now() - started < 5_000, "gave up in about giveUpAfterMs");
  } finally {
    client.close();
    silent.close();
    for (const c of held) c.close();
    await serving;
  }
});

/** A TCP endpoint that takes connections and reads everything, never answering; counts them. */
function silentEndpoint() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const serving = (async () => {
    try {
      for await (const c of listener) {
        conns.push(c);
        (async () => {
          const buf = new Uint8Array(65_536);
          try {
            while ((await c.read(buf)) !== null) { /* read and ignore */ }
          } catch { /* closed */ }
        })();
      }
    } catch { /* closed */ }
  })();
  return {
    addr: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    accepted: () => conns.length,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await serving;
    },
  };
}

/** The error `f` rejects with (fails when it resolves). */
async function errorOf(f: () => Promise<unknown>): Promise<KVError> {
  try {
    await f();
  } catch (e) {
    assertTrue(e instanceof KVError, String(e));
    return e as KVError;
  }
  throw new Error("expected an error");
}

Deno.test("kv client: a write whose connection drops after it was sent fails as Timeout (maybe applied)", async () => {
  // The endpoint reads the request, then dies; later connections are refused.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const serving = (async () => {
    const c = await listener.accept();
    listener.close();
    const buf = new Uint8Array(65_536);
    let read = 0;
    // The preface, SETTINGS, and the Put's HEADERS and DATA: well over 100 bytes.
    while (read < 150) {
      const n = await c.read(buf);
      if (n === null) break;
      read += n;
    }
    c.close();
  })();
  const client = new KVClient({ endpoints: [`127.0.0.1:${port}`], timeoutMs: 1_500 });
  try {
    const error = await errorOf(() => client.put("k", "v", { requestId: "r1" }));
    assertEquals(error.code, "Timeout");
    assertTrue(error.message.includes("may have been applied"), error.message);
  } finally {
    client.close();
    await serving;
  }
});

Deno.test("kv client: close() ends a call in flight at once as Closed, and opens no connection after", async () => {
  const endpoint = silentEndpoint();
  const client = new KVClient({ endpoints: [endpoint.addr], timeoutMs: 3_000 });
  try {
    const call = errorOf(() => client.put("k", "v"));
    await new Promise((r) => setTimeout(r, 200));
    const closedAt = Date.now();
    client.close();
    const error = await call;
    assertEquals(error.code, "Closed");
    assertTrue(Date.now() - closedAt < 500, `ended ${Date.now() - closedAt} ms after close()`);
    await new Promise((r) => setTimeout(r, 300));
    assertEquals(endpoint.accepted(), 1);
  } finally {
    client.close();
    await endpoint.close();
  }
});

Deno.test("kv client: a watch with giveUpAfterMs tries every endpoint, a silent first one included", async () => {
  const endpoint = silentEndpoint();
  const refusing = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const refused = `127.0.0.1:${(refusing.addr as Deno.NetAddr).port}`;
  refusing.close();
  const client = new KVClient({ endpoints: [endpoint.addr, refused], timeoutMs: 500 });
  try {
    const error = await errorOf(async () => {
      for await (const _ of client.watch({ key: "k", giveUpAfterMs: 2_000 })) break;
    });
    assertTrue(error.message.includes(`${endpoint.addr} (no answer in time)`), error.message);
    assertTrue(error.message.includes(`${refused} (connection refused)`), error.message);
  } finally {
    client.close();
    await endpoint.close();
  }
});

Deno.test("kv client: a read that times out does not say it may have been applied", async () => {
  const endpoint = silentEndpoint();
  const client = new KVClient({ endpoints: [endpoint.addr], timeoutMs: 600 });
  try {
    const error = await errorOf(() => client.get("k"));
    assertEquals(error.code, "Timeout");
    assertTrue(!error.message.includes("applied"), error.message);
  } finally {
    client.close();
    await endpoint.close();
  }
});
