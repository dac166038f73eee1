import { assertEquals } from "../common/test_helpers.ts";
import { utf8 } from "../common/bytes.ts";
import { Engine } from "../storage/engine.ts";
import { MemFileSystem } from "../storage/mem_fs.ts";
import { CommandOp, encodeCommand } from "./command.ts";
import { type ApplyEntry, StateMachine } from "./state_machine.ts";

function put(key: string, value: string, requestId: string): Uint8Array {
  return encodeCommand({
    op: CommandOp.Put,
    timestampMs: 1_000,
    requestId,
    key: utf8(key),
    value: utf8(value),
    expiresAtMs: 0,
    ifVersion: undefined,
  });
}

async function applyIn(groups: number[][]): Promise<{ revision: number; versions: number[] }> {
  const engine = await Engine.open("/sm", { fs: new MemFileSystem() });
  const sm = new StateMachine(engine);
  // A write, its retry (same request id) and another write, as a retried client leaves them.
  const data = [put("a", "1", "req-1"), put("a", "1", "req-1"), put("b", "2", "req-2")];
  const versions: number[] = [];
  for (const g of groups) {
    const entries: ApplyEntry[] = g.map((i) => ({ index: i + 1, data: data[i] }));
    const results = await sm.apply(entries);
    for (const i of g) versions.push(results.get(i + 1)!.revision);
  }
  const revision = sm.revision;
  await engine.close();
  return { revision, versions };
}

Deno.test("a retried request id applies once however the entries group into apply batches", async () => {
  const together = await applyIn([[0, 1, 2]]);
  const apart = await applyIn([[0], [1], [2]]);
  const split = await applyIn([[0, 1], [2]]);
  assertEquals(together, { revision: 2, versions: [1, 1, 2] });
  assertEquals(apart, together);
  assertEquals(split, together);
});
