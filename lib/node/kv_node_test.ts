import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { fromUtf8, utf8 } from "../common/bytes.ts";
import { parseServerArgs } from "../server/config.ts";
import { KVNode } from "./kv_node.ts";
import { Logger } from "./logger.ts";

/** A one-node cluster in this process, on a temp dir, once it leads; closed and removed by `using`. */
async function singleNode() {
  const root = await Deno.makeTempDir({ prefix: "rustkvd-node-test-" });
  const parsed = parseServerArgs([
    "--node-id",
    "n1",
    "--data-dir",
    `${root}/n1`,
    "--initial-cluster",
    "n1=127.0.0.1:1",
    "--log-level",
    "error",
  ]);
  if (parsed.kind !== "run") throw new Error(`unexpected parse result ${parsed.kind}`);
  const node = await KVNode.start(parsed.config, { log: new Logger("n1", "error", () => {}) });
  const close = async () => {
    await node.close();
    await Deno.remove(root, { recursive: true });
  };
  try {
    for (let i = 0; i < 200 && !node.replica.isLeader; i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    assertTrue(node.replica.isLeader, "the single node leads within 5 s");
  } catch (e) {
    await close();
    throw e;
  }
  return { node, [Symbol.asyncDispose]: close };
}

Deno.test("a retried put or delete with prevKv gets the value its first attempt replaced", async () => {
  await using n = await singleNode();
  const { node } = n;
  await node.put(utf8("k"), utf8("v1"));
  const first = await node.put(utf8("k"), utf8("v2"), { prevKv: true, requestId: "put-1" });
  const retry = await node.put(utf8("k"), utf8("v2"), { prevKv: true, requestId: "put-1" });
  assertEquals(fromUtf8(first.prev!.value), "v1");
  assertEquals(retry.version, first.version);
  assertEquals(fromUtf8(retry.prev!.value), "v1", "not 'no previous value'");
  assertEquals(retry.prev!.version, first.prev!.version);

  const del = await node.delete(utf8("k"), { prevKv: true, requestId: "del-1" });
  const delRetry = await node.delete(utf8("k"), { prevKv: true, requestId: "del-1" });
  assertEquals(delRetry.deleted, true);
  assertEquals(delRetry.version, del.version);
  assertEquals(fromUtf8(delRetry.prev!.value), "v2");
});
