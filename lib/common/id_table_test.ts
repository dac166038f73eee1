import { assertEquals } from "./test_helpers.ts";
import { IdTable } from "./id_table.ts";

Deno.test("id table: behaves like a Map of integer ids under random use (seeded)", () => {
  const seed = 7106;
  let state = seed;
  const random = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
  console.log(`seed ${seed}`);
  const table = new IdTable<string>();
  const model = new Map<number, string>();
  for (let step = 0; step < 20_000; step++) {
    const id = Math.floor(random() * 300) * 2 + 1; // odd ids, like client stream ids
    const r = random();
    if (r < 0.45) {
      table.set(id, `v${step}`);
      model.set(id, `v${step}`);
    } else if (r < 0.9) {
      assertEquals(table.delete(id), model.delete(id), `delete ${id} at step ${step}`);
    } else {
      assertEquals(table.get(id), model.get(id));
      assertEquals(table.has(id), model.has(id));
    }
    assertEquals(table.size, model.size);
  }
  const sorted = [...model.entries()].sort((a, b) => a[0] - b[0]);
  assertEquals(table.entries(), sorted);
  assertEquals(table.values(), sorted.map(([, v]) => v));
});

Deno.test("id table: entries may be deleted while iterating, and clear empties it", () => {
  const table = new IdTable<number>();
  for (let i = 0; i < 10; i++) table.set(i, i * 10);
  for (const [id] of table.entries()) if (id % 2 === 0) table.delete(id);
  assertEquals(table.values(), [10, 30, 50, 70, 90]);
  table.clear();
  assertEquals(table.size, 0);
  assertEquals(table.get(1), undefined);
});

Deno.test("id table: ids beyond 2^32 (log indexes) work and keep the order they were set in", () => {
  const table = new IdTable<string>();
  const base = 2 ** 32 - 3;
  for (let i = 0; i < 6; i++) table.set(base + i, `v${i}`);
  assertEquals(table.get(base + 4), "v4");
  assertEquals(table.delete(base + 1), true);
  assertEquals(table.size, 5);
  assertEquals(table.entries().map(([id]) => id - base), [0, 2, 3, 4, 5]);
});
