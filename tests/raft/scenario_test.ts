// Runs every scenario in tests/raft/testdata. REWRITE=1 regenerates the expected
// output (review the diff before committing it).
import { assertEquals } from "../../lib/common/test_helpers.ts";
import { formatScenario, parseScenario, ScenarioRunner } from "./runner.ts";

const dir = new URL("./testdata/", import.meta.url);
const rewrite = Deno.env.get("REWRITE") === "1";

for (
  const f of [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".txt")).sort((a, b) =>
    a.name < b.name ? -1 : 1
  )
) {
  Deno.test(`scenario ${f.name}`, () => {
    const url = new URL(f.name, dir);
    const blocks = parseScenario(Deno.readTextFileSync(url));
    const runner = new ScenarioRunner();
    const actual = blocks.map((b) => ({ ...b, expected: runner.run(b.command) }));
    if (rewrite) {
      Deno.writeTextFileSync(url, formatScenario(actual));
      return;
    }
    for (let i = 0; i < blocks.length; i++) {
      assertEquals(
        actual[i].expected,
        blocks[i].expected,
        `${f.name}: "${blocks[i].command}" (block ${i + 1})`,
      );
    }
  });
}
