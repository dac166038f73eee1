import { assertEquals } from "../common/test_helpers.ts";
import { utf8 } from "../common/bytes.ts";
import { Engine } from "../storage/engine.ts";
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

async function setup() {
  const engine = await Engine.open("/w", { fs: new MemFileSystem() });
  const sm = new StateMachine(engine);
  const hub = new WatchHub(() => sm.engine, () => sm.revision);
  sm.onChange = (events) => hub.publish(events);
  return { engine, sm, hub };
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

Deno.test("watch: opened while a batch is being applied, it starts after the writes already counted", async () => {
  const { engine, sm, hub } = await setup();
  let w: Watcher | undefined;
  // Open the watch from inside the apply, between the batch's first and second write (the
  // apply asks once before a put, to see what it will read, and once while applying it).
  const inner = sm.wantPrevForEvents;
  let calls = 0;
  sm.wantPrevForEvents = () => {
    if (++calls === 3) w = hub.watch(watchTarget(undefined, utf8("")));
    return inner();
  };
  await sm.apply([{ index: 1, data: put("a", "1") }, { index: 2, data: put("b", "2") }]);
  assertEquals(w!.lastVersion, 1);
  assertEquals(await take(w!, 1), [2], "version 1 was counted before the watch opened");
  w!.return();
  await engine.close();
});
