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
