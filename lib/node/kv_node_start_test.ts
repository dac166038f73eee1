import { assertEquals, assertTrue } from "../common/test_helpers.ts";
import { utf8 } from "../common/bytes.ts";
import { EntryType } from "../raft/types.ts";
import { DenoFileSystem } from "../storage/deno_fs.ts";
import { dirName } from "../storage/fs.ts";
import { Engine } from "../storage/engine.ts";
import { WriteBatch } from "../storage/write_batch.ts";
import { stateMachineEngineOptions } from "./engine_options.ts";
import { KVNode } from "./kv_node.ts";
import { Logger } from "./logger.ts";
import { RaftLogStore } from "./raft_log_store.ts";
import { encodeSnapshotMeta, snapshotMetaKey } from "./snapshot.ts";
import { singleNodeConfig, untilLeader, withTempDataDir } from "./testing.ts";
import { parseServerArgs } from "../server/config.ts";

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
  await withTempDataDir(async (dataDir) => {
    const fs = new RecordingFileSystem();
    const node = await KVNode.start(singleNodeConfig(dataDir), {
      fs,
      log: new Logger("n1", "error", () => {}),
    });
    await node.close();
    const at = (call: string) => fs.calls.indexOf(call);
    const lastAt = (call: string) => fs.calls.lastIndexOf(call);
    // The data dir's own entry, and kv/ and raft/ inside it, each synced after being created.
    assertTrue(at(`syncDir ${dirName(dataDir)}`) > at(`mkdir ${dataDir}`), fs.calls.join("; "));
    for (const sub of ["kv", "raft"]) {
      assertTrue(at(`mkdir ${dataDir}/${sub}`) >= 0, fs.calls.join("; "));
      assertTrue(lastAt(`syncDir ${dataDir}`) > at(`mkdir ${dataDir}/${sub}`), fs.calls.join("; "));
    }
  });
});

Deno.test("a snapshot installed but not logged before a crash replaces the stale log at the next start", async () => {
  await withTempDataDir(async (dataDir) => {
    const fs = new DenoFileSystem();
    const conf = { voters: ["n1"], learners: [] };
    // A node that ran once (its IDENTITY stays), whose kv/ and raft/ are then set up below.
    const once = await KVNode.start(singleNodeConfig(dataDir), {
      fs,
      log: new Logger("n1", "error", () => {}),
    });
    await once.close();
    for (const sub of ["kv", "raft"]) await Deno.remove(`${dataDir}/${sub}`, { recursive: true });
    // The log still holds entries 1..120 of term 1; the engine holds a snapshot at index 100
    // of term 2 (the leader's), swapped in just before the crash.
    const store = await RaftLogStore.open(fs, `${dataDir}/raft`, 0, conf);
    const stale = Array.from({ length: 120 }, (_, i) => ({
      index: i + 1,
      term: 1,
      type: EntryType.Normal,
      groupId: 0,
      data: new Uint8Array(),
    }));
    await store.save({ entries: stale, hardState: { term: 2, vote: "", commit: 0 } }, true);
    await store.close();
    const engine = await Engine.open(`${dataDir}/kv`, { ...stateMachineEngineOptions("n1"), fs });
    await engine.write(
      new WriteBatch()
        .put(utf8("k"), utf8("v"), { version: 1 })
        .put(snapshotMetaKey, encodeSnapshotMeta(100, 2, conf, 1), { version: 1 }),
      { sync: true, appliedIndex: 100 },
    );
    await engine.close();

    const node = await KVNode.start(singleNodeConfig(dataDir), {
      fs,
      log: new Logger("n1", "error", () => {}),
    });
    try {
      assertEquals(node.store.snapshot().meta.index, 100);
      assertEquals(node.store.snapshot().meta.term, 2);
      assertEquals(node.store.lastIndex(), 100);
    } finally {
      await node.close();
    }
  });
});

Deno.test({
  name:
    "a second node on a data dir in use is refused before it touches anything; the first runs on",
  // The refused attempt's file lock stays queued in the runtime until the first node lets go.
  sanitizeOps: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "rustkvd-start-test-" });
    const dataDir = `${root}/n1`;
    const quiet = { log: new Logger("n1", "error", () => {}) };
    const first = await KVNode.start(singleNodeConfig(dataDir), quiet);
    try {
      await untilLeader(first);
      await first.put(utf8("a"), utf8("1"));
      const files = async () => {
        const names: string[] = [];
        for (const sub of ["", "/kv", "/raft"]) {
          for await (const e of Deno.readDir(dataDir + sub)) names.push(`${sub}/${e.name}`);
        }
        return names.sort();
      };
      const before = await files();
      let refused = "";
      try {
        const second = await KVNode.start(singleNodeConfig(dataDir), quiet);
        await second.close();
      } catch (e) {
        refused = `${(e as Error).name}: ${(e as Error).message}`;
      }
      assertTrue(refused.startsWith("StartupError: data dir"), refused);
      assertTrue(refused.includes("in use by another process"), refused);
      assertEquals(await files(), before, "no file created, renamed or deleted");
      const { version } = await first.put(utf8("b"), utf8("2"));
      assertEquals((await first.get(utf8("b"))).revision >= version, true);
    } finally {
      await first.close();
    }
    // Once the first has stopped, the directory can be used again.
    const again = await KVNode.start(singleNodeConfig(dataDir), quiet);
    await again.close();
    await Deno.remove(root, { recursive: true });
  },
});

Deno.test("a restart that would serve at another address than the member record is refused", async () => {
  await withTempDataDir(async (dataDir) => {
    const quiet = { log: new Logger("n1", "error", () => {}) };
    const configAt = (addr: string) => {
      const parsed = parseServerArgs([
        "--node-id",
        "n1",
        "--data-dir",
        dataDir,
        "--addr",
        "127.0.0.1:7101",
        "--advertise-addr",
        addr,
        "--log-level",
        "error",
      ]);
      if (parsed.kind !== "run") throw new Error(`unexpected parse result ${parsed.kind}`);
      return parsed.config;
    };
    const first = await KVNode.start(configAt("127.0.0.1:7101"), quiet);
    await untilLeader(first);
    assertEquals(first.replica.members.get("n1")?.addr, "127.0.0.1:7101");
    await first.close();
    let refused = "";
    try {
      const moved = await KVNode.start(configAt("127.0.0.1:7102"), quiet);
      await moved.close();
    } catch (e) {
      refused = (e as Error).message;
    }
    assertTrue(refused.includes("n1 is a member at 127.0.0.1:7101"), refused);
    assertTrue(refused.includes("--advertise-addr 127.0.0.1:7101"), refused);
    // The same address again starts as before.
    const again = await KVNode.start(configAt("127.0.0.1:7101"), quiet);
    await again.close();
  });
});

/** Copies a directory of files (one level, as an engine directory is). */
async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to);
  for await (const e of Deno.readDir(from)) {
    await Deno.copyFile(`${from}/${e.name}`, `${to}/${e.name}`);
  }
}

Deno.test("a crash between a snapshot swap's renames is finished durably before the old state is deleted", async () => {
  await withTempDataDir(async (dataDir) => {
    const quiet = { log: new Logger("n1", "error", () => {}) };
    const first = await KVNode.start(singleNodeConfig(dataDir), quiet);
    await untilLeader(first);
    await first.put(utf8("a"), utf8("1"));
    await first.close();
    // The install had renamed kv to kv.old and not yet moved the complete staging copy in.
    await copyDir(`${dataDir}/kv`, `${dataDir}/kv.staging`);
    await Deno.rename(`${dataDir}/kv`, `${dataDir}/kv.old`);
    const fs = new (class extends RecordingFileSystem {
      oldPresentAtSync: boolean | undefined;
      override async syncDir(dir: string): Promise<void> {
        if (dir === dataDir && this.oldPresentAtSync === undefined) {
          this.oldPresentAtSync = await Deno.stat(`${dataDir}/kv.old`).then(
            () => true,
            () => false,
          );
        }
        await super.syncDir(dir);
      }
    })();
    const node = await KVNode.start(singleNodeConfig(dataDir), { ...quiet, fs });
    try {
      assertEquals(fs.oldPresentAtSync, true, "the move was made durable while kv.old was kept");
      await untilLeader(node);
      assertEquals((await node.get(utf8("a"))).kv?.value, utf8("1"));
    } finally {
      await node.close();
    }
    const left = [];
    for await (const e of Deno.readDir(dataDir)) left.push(e.name);
    assertEquals(left.filter((n) => n.startsWith("kv")).sort(), ["kv"]);
  });
});

Deno.test("a node whose applied state lost entries the log no longer holds, or lost IDENTITY, refuses to start", async () => {
  await withTempDataDir(async (dataDir) => {
    const quiet = { log: new Logger("n1", "error", () => {}) };
    const config = { ...singleNodeConfig(dataDir), snapshotEntries: 20 };
    const refusal = async () => {
      try {
        const node = await KVNode.start(config, quiet);
        await node.close();
        return "started";
      } catch (e) {
        return (e as Error).message;
      }
    };
    const node = await KVNode.start(config, quiet);
    await untilLeader(node);
    for (let i = 0; i < 80; i++) await node.put(utf8(`k${i}`), utf8("v"));
    for (let i = 0; i < 100 && node.store.snapshot().meta.index === 0; i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    assertTrue(node.store.snapshot().meta.index > 0, "the log was compacted");
    await node.close();

    // A torn-looking WAL tail: the engine comes back behind the log's start.
    const wals = [];
    for await (const e of Deno.readDir(`${dataDir}/kv`)) {
      if (e.name.endsWith(".log")) wals.push(e.name);
    }
    assertEquals(wals.length, 1);
    await Deno.truncate(`${dataDir}/kv/${wals[0]}`, 40);
    const behind = await refusal();
    assertTrue(behind.includes("behind the start of the raft log"), behind);

    await Deno.remove(`${dataDir}/IDENTITY`);
    const noIdentity = await refusal();
    assertTrue(noIdentity.includes("IDENTITY is missing, but"), noIdentity);
  });
});

Deno.test("a restart with other settings keeps the previous run's vote-quiet promise until it lapses", async () => {
  await withTempDataDir(async (dataDir) => {
    const quiet = { log: new Logger("n1", "error", () => {}) };
    const recorded = async () => (await Deno.readTextFile(`${dataDir}/VOTE_QUIET`)).trim();
    const first = await KVNode.start(singleNodeConfig(dataDir), quiet);
    assertEquals(await recorded(), "126", "150 ms election timeout at 10 ms ticks: 14 x 9 ms");
    await first.close();
    // Restarted without lease reads: it promises nothing from now on, but the leader it
    // acknowledged may still hold a lease on the old promise.
    const again = await KVNode.start({ ...singleNodeConfig(dataDir), readLease: false }, quiet);
    try {
      assertEquals(again.replica.voteQuietMs, 0);
      assertEquals(await recorded(), "126", "kept while the old promise may be relied on");
      for (let i = 0; i < 100 && (await recorded()) !== "0"; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assertEquals(await recorded(), "0", "lowered once it lapsed");
    } finally {
      await again.close();
    }
  });
});

Deno.test("a node that stopped between writing IDENTITY and its first log entries bootstraps on restart", async () => {
  await withTempDataDir(async (dataDir) => {
    const quiet = { log: new Logger("n1", "error", () => {}) };
    const first = await KVNode.start(singleNodeConfig(dataDir), quiet);
    await first.close();
    // What the crash left: IDENTITY only.
    for (const sub of ["kv", "raft"]) await Deno.remove(`${dataDir}/${sub}`, { recursive: true });
    const node = await KVNode.start(singleNodeConfig(dataDir), quiet);
    try {
      await untilLeader(node);
      assertTrue(node.replica.isLeader, "a leader again, not a member-less follower forever");
      await node.put(utf8("a"), utf8("1"));
    } finally {
      await node.close();
    }
  });
});
