import { assertEquals } from "../common/test_helpers.ts";
import { utf8 } from "../common/bytes.ts";
import { Engine } from "../storage/engine.ts";
import type { FileHandle } from "../storage/fs.ts";
import { MemFileSystem } from "../storage/mem_fs.ts";
import { CommandOp, encodeCommand } from "./command.ts";
import { StateMachine } from "./state_machine.ts";
import { type Watcher, WatchHub, watchTarget } from "./watch_hub.ts";

function put(key: string, value: string): Uint8Array {
  return encodeCommand({
    op: CommandOp.Put,
    timestampMs: 1,
    requestId: "",
    key: utf8(key),
    value: utf8(value),
    expiresAtMs: 0,
    ifVersion: undefined,
  });
}

async function take(w: Watcher, n: number): Promise<number[]> {
  const versions: number[] = [];
  for (let i = 0; i < n; i++) versions.push((await w.next()).value!.kv.version);
  return versions;
}

/** A file system whose appends take a few milliseconds, like a disk: a batch's write is not instant. */
class SlowAppendFs extends MemFileSystem {
  override async create(path: string): Promise<FileHandle> {
    return slow(await super.create(path));
  }
  override async open(path: string): Promise<FileHandle> {
    return slow(await super.open(path));
  }
}

function slow(h: FileHandle): FileHandle {
  const append = h.append;
  h.append = async (data) => {
    await new Promise((resolve) => setTimeout(resolve, 5));
    return append(data);
  };
  return h;
}

async function setup(fs: MemFileSystem = new MemFileSystem()) {
  const engine = await Engine.open("/w", { fs });
  const sm = new StateMachine(engine);
  const hub = new WatchHub(() => sm.engine, () => sm.publishedRevision);
  sm.onChange = (events) => hub.publish(events);
  return { engine, sm, hub };
}

/**
 * A state machine and hub wired as a node wires them (prevKv decided per put, watches
 * started between applies), after a first put of k = v1 at revision 1.
 */
async function prevKvSetup() {
  const engine = await Engine.open("/w", { fs: new MemFileSystem() });
  const sm = new StateMachine(engine);
  const hub = new WatchHub(() => sm.engine, () => sm.publishedRevision, (f) => sm.atRest(f));
  sm.onChange = (events) => hub.publish(events);
  sm.wantPrevForEvents = () => hub.wantsPrev;
  await sm.apply([{ index: 1, data: put("k", "v1") }]);
  return { engine, sm, hub };
}

/** An expiry that changes nothing but makes its batch wait on an engine read. */
function expiryThatReads(): Uint8Array {
  return encodeCommand({ op: CommandOp.ExpireKey, timestampMs: 1_000, key: utf8("o"), version: 9 });
}

Deno.test("watch: a start beyond this replica's revision waits for it instead of failing", async () => {
  const { engine, sm, hub } = await setup();
  await sm.apply([{ index: 1, data: put("a", "1") }]);
  const w = hub.watch(watchTarget(undefined, utf8("")), { startVersion: 4 });
  assertEquals(w.lastVersion, 3);
  await sm.apply([2, 3, 4, 5].map((i) => ({ index: i, data: put("a", String(i)) })));
  assertEquals(await take(w, 2), [4, 5], "versions 2 and 3 are before the start");
  w.return();
  await engine.close();
});

for (const startVersion of [0, 1]) {
  Deno.test(`watch: opened while a batch is being applied (start ${startVersion}), it gets each of its writes once`, async () => {
    const { engine, sm, hub } = await setup(new SlowAppendFs());
    let w: Watcher | undefined;
    // Open the watch from inside the apply, between the batch's first and second write (the
    // apply asks once before a put, to see what it will read, and once while applying it).
    // Write 1 is counted then but not yet in the engine: the watch must not lose it.
    const inner = sm.wantPrevForEvents;
    let calls = 0;
    sm.wantPrevForEvents = () => {
      if (++calls === 3) w = hub.watch(watchTarget(undefined, utf8("")), { startVersion });
      return inner();
    };
    await sm.apply([{ index: 1, data: put("a", "1") }, { index: 2, data: put("b", "2") }]);
    assertEquals(sm.revision, 2);
    assertEquals(await take(w!, 2), [1, 2]);
    await sm.apply([{ index: 3, data: put("c", "3") }]);
    assertEquals(await take(w!, 1), [3], "then live, without a duplicate");
    w!.return();
    await engine.close();
  });
}

Deno.test("watch: a prevKv watch opened while a batch is applied gets every event of it with its previous value", async () => {
  const { engine, sm, hub } = await prevKvSetup();
  // The batch's expiry waits on an engine read: the watch opens then, after the first put
  // was applied without reading its previous value (nobody wanted it yet).
  const applying = sm.apply([
    { index: 2, data: put("k", "v2") },
    { index: 3, data: expiryThatReads() },
    { index: 4, data: put("k", "v3") },
  ]);
  const w = hub.watch(watchTarget(utf8("k")), { prevKv: true });
  await applying;
  const seen: string[] = [];
  for (let i = 0; i < 2; i++) {
    const e = (await w.next()).value!;
    const prev = e.prev ? `${new TextDecoder().decode(e.prev.value)}@${e.prev.version}` : "none";
    seen.push(`${e.type}@${e.kv.version} prev=${prev}`);
  }
  assertEquals(seen, ["put@2 prev=v1@1", "put@3 prev=v2@2"]);
  w.return();
  await engine.close();
});

Deno.test("watch: a prevKv watch from now whose batch compacted its history still gets that batch", async () => {
  const { engine, sm, hub } = await prevKvSetup();
  // The batch under way writes, waits on a read, writes, then compacts up to its last write.
  const applying = sm.apply([
    { index: 2, data: put("k", "v2") },
    { index: 3, data: expiryThatReads() },
    { index: 4, data: put("k", "v3") },
    {
      index: 5,
      data: encodeCommand({ op: CommandOp.CompactHistory, timestampMs: 1_000, revision: 3 }),
    },
  ]);
  const w = hub.watch(watchTarget(utf8("k")), { prevKv: true });
  await applying;
  assertEquals(w.cancel, undefined, "the watch is open");
  await sm.apply([{ index: 6, data: put("k", "v4") }]);
  const got: string[] = [];
  for (let i = 0; i < 3; i++) {
    const e = (await w.next()).value!;
    got.push(`${e.kv.version}:${e.prev ? new TextDecoder().decode(e.prev.value) : "-"}`);
  }
  // Its history is gone, so the batch comes as published: no event lost, an early prev missing.
  assertEquals(got, ["2:-", "3:v2", "4:v3"]);
  w.return();
  await engine.close();
});

Deno.test("watch: a start at the compacted revision is served (a resume that missed nothing)", async () => {
  const { engine, sm, hub } = await setup();
  await sm.apply([1, 2, 3].map((i) => ({ index: i, data: put("a", String(i)) })));
  await engine.compactHistory(2);
  const w = hub.watch(watchTarget(undefined, utf8("")), { startVersion: 2 });
  assertEquals(await take(w, 2), [2, 3]);
  let refused = false;
  try {
    hub.watch(watchTarget(undefined, utf8("")), { startVersion: 1 });
  } catch {
    refused = true;
  }
  assertEquals(refused, true, "below it: refused");
  w.return();
  await engine.close();
});

Deno.test("watch: a watcher that does not read is cut off by bytes too, not only by events", async () => {
  const { engine, hub } = await setup();
  const w = hub.watch(watchTarget(undefined, utf8("")));
  const value = new Uint8Array(1 << 20);
  for (let v = 1; v <= 70 && !w.cancel; v++) {
    hub.publish([{ type: "put", kv: { key: utf8("big"), value, version: v, expiresAtMs: 0 } }]);
  }
  assertEquals(w.cancel !== undefined, true, "cut off well before 10,000 events");
  assertEquals(
    /bytes behind; resume from version 1$/.test(w.cancel!.reason),
    true,
    w.cancel!.reason,
  );
  await engine.close();
});

Deno.test("watch: a watcher cut off inside a transaction's events resumes at that transaction's version", async () => {
  const { engine, hub } = await setup();
  const w = hub.watch(watchTarget(undefined, utf8("")));
  const event = (key: string, version: number, value = utf8("v")) => ({
    type: "put" as const,
    kv: { key: utf8(key), value, version, expiresAtMs: 0 },
  });
  hub.publish([event("a", 1)]);
  hub.publish([event("x", 2), event("y", 2), event("z", 2)]); // one transaction
  assertEquals(await take(w, 2), [1, 2]);
  assertEquals(w.lastVersion, 1, "version 2 is only partly delivered");
  const value = new Uint8Array(1 << 20);
  for (let v = 3; v <= 80 && !w.cancel; v++) hub.publish([event("big", v, value)]);
  assertEquals(w.cancel?.lastVersion, 1, "the resume point repeats version 2, not skip its rest");
  assertEquals(
    /resume from version 2 \(1 event\(s\) of that version were delivered already\)$/.test(
      w.cancel!.reason,
    ),
    true,
    w.cancel!.reason,
  );

  const complete = hub.watch(watchTarget(undefined, utf8("")));
  hub.publish([event("x", 100), event("y", 100)]);
  hub.publish([event("a", 101)]);
  assertEquals(await take(complete, 2), [100, 100]);
  assertEquals(complete.lastVersion, 100, "every event of version 100 taken");
  complete.return();
  await engine.close();
});

Deno.test("watch: once the node shuts down, open watches end with the reason and new ones are refused", async () => {
  const { engine, hub } = await setup();
  const w = hub.watch(watchTarget(undefined, utf8("")));
  hub.shutDown("the node is shutting down; reconnect to resume");
  assertEquals(w.cancel?.reason, "the node is shutting down; reconnect to resume");
  let refused = "";
  try {
    hub.watch(watchTarget(undefined, utf8("")));
  } catch (e) {
    refused = (e as Error).name;
  }
  assertEquals(refused, "ClosedError", "a reconnecting client goes elsewhere");
  await engine.close();
});
