import { assertTrue } from "../common/test_helpers.ts";
import { parseServerArgs } from "../server/config.ts";
import { DenoFileSystem } from "../storage/deno_fs.ts";
import { KVNode } from "./kv_node.ts";
import { Logger } from "./logger.ts";

/** The real file system, recording which directories were created and synced, in order. */
class RecordingFileSystem extends DenoFileSystem {
  readonly calls: string[] = [];
  override async mkdir(dir: string): Promise<void> {
    this.calls.push(`mkdir ${dir}`);
    await super.mkdir(dir);
  }
  override async syncDir(dir: string): Promise<void> {
    this.calls.push(`syncDir ${dir}`);
    await super.syncDir(dir);
  }
}

Deno.test("a new node makes its data directories durable before it runs", async () => {
  const root = await Deno.makeTempDir({ prefix: "rustkvd-start-test-" });
  const dataDir = `${root}/n1`;
  try {
    const parsed = parseServerArgs([
      "--node-id",
      "n1",
      "--data-dir",
      dataDir,
      "--initial-cluster",
      "n1=127.0.0.1:1",
      "--log-level",
      "error",
    ]);
    if (parsed.kind !== "run") throw new Error(`unexpected parse result ${parsed.kind}`);
    const fs = new RecordingFileSystem();
    const node = await KVNode.start(parsed.config, {
      fs,
      log: new Logger("n1", "error", () => {}),
    });
    await node.close();
    const at = (call: string) => fs.calls.indexOf(call);
    const lastAt = (call: string) => fs.calls.lastIndexOf(call);
    // The data dir's own entry, and kv/ and raft/ inside it, each synced after being created.
    assertTrue(at(`syncDir ${root}`) > at(`mkdir ${dataDir}`), fs.calls.join("; "));
    for (const sub of ["kv", "raft"]) {
      assertTrue(at(`mkdir ${dataDir}/${sub}`) >= 0, fs.calls.join("; "));
      assertTrue(lastAt(`syncDir ${dataDir}`) > at(`mkdir ${dataDir}/${sub}`), fs.calls.join("; "));
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
