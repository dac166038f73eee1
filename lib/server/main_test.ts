import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { parseServerArgs } from "./config.ts";
import { exitStartupFailed, runServer } from "./main.ts";

Deno.test("a server whose port is taken stops before it joins or writes its data dir", async () => {
  const root = await Deno.makeTempDir({ prefix: "rustkvd-main-test-" });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  // A free port for --addr when the RESP port is the taken one (bound and let go).
  const spare = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const sparePort = (spare.addr as Deno.NetAddr).port;
  spare.close();
  try {
    for (
      const portFlags of [["--addr", `127.0.0.1:${port}`], ["--resp-addr", `127.0.0.1:${port}`]]
    ) {
      const parsed = parseServerArgs([
        "--node-id",
        "n2",
        "--data-dir",
        `${root}/n2`,
        // Nobody answers here: a join would wait for it, and never write IDENTITY without it.
        "--peers",
        "127.0.0.1:1",
        "--log-level",
        "error",
        ...(portFlags[0] === "--addr" ? [] : ["--addr", `127.0.0.1:${sparePort}`]),
        ...portFlags,
      ]);
      if (parsed.kind !== "run") throw new Error(`unexpected parse result ${parsed.kind}`);
      const started = Date.now();
      assertEquals(await runServer(parsed.config), exitStartupFailed);
      assertTrue(Date.now() - started < 2_000, "refused at once, not after a join attempt");
      let created = true;
      try {
        await Deno.stat(`${root}/n2`);
      } catch {
        created = false;
      }
      assertEquals(created, false, `${portFlags[0]} taken: the data dir was not even created`);
    }
  } finally {
    taken.close();
    await Deno.remove(root, { recursive: true });
  }
});
