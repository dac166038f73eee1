import { SeededRandom } from "../common/random.ts";
import { assertEquals } from "../common/test_helpers.ts";
import { NewestIndex } from "./newest_index.ts";

Deno.test("newest index: agrees with a Map through growth and clustered hashes", () => {
  for (const seed of [1, 2, 3]) {
    const r = new SeededRandom(seed);
    const index = new NewestIndex();
    const model = new Map<number, number>();
    for (let i = 0; i < 20_000; i++) {
      // Half the hashes fall in a narrow band, so probe chains get long and wrap.
      const h = r.nextInt(2) === 0 ? r.nextInt(2_000) * 1024 : r.nextInt(0x3fff_ffff + 1);
      const entry = r.nextInt(3) === 0 ? -1 : i;
      index.set(h, entry);
      model.set(h, entry);
      const probe = r.nextInt(0x3fff_ffff + 1);
      assertEquals(index.get(probe), model.get(probe), `seed ${seed}`);
      // An earlier hash, possibly still in the table from before a growth.
      const earlier = r.nextInt(2) === 0 ? r.nextInt(2_000) * 1024 : h;
      assertEquals(index.get(earlier), model.get(earlier), `seed ${seed}: earlier ${earlier}`);
    }
    for (const [h, entry] of model) assertEquals(index.get(h), entry, `seed ${seed}: hash ${h}`);
    assertEquals(index.get(0x3fff_ffff), model.get(0x3fff_ffff));
  }
});
