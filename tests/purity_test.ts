import { assertEquals, assertTrue } from "../lib/common/test_helpers.ts";
import { checkDirectory, findImpurities } from "../tools/check_raft_purity.ts";

const impureSource = `
import { readFile } from "node:fs";
import { Engine } from "../storage/engine.ts";
// Date.now() in a comment is fine
export async function elect() {
  const t = Date.now() + performance.now();
  setTimeout(() => {}, Math.random() * 10);
  await Deno.readFile("x");
  return "async await Date.now() in a string is fine";
}
export function pick(m: Pick<Msg, "type" | "from" | "to">) {
  return m;
}
import {
  a,
  b,
} from "node:os";
`;

Deno.test("purity check catches clocks, timers, randomness, Deno, async and I/O imports", () => {
  const rules = findImpurities(impureSource, "impure.ts").map((v) => `${v.line}:${v.rule}`);
  for (
    const expected of [
      "2:import of node:fs",
      "3:import of ../storage/engine.ts",
      "5:async code",
      "6:wall clock (Date.now)",
      "6:monotonic clock (performance.now)",
      "7:timer",
      "7:global randomness (Math.random)",
      "8:Deno API",
      "8:await",
      "14:import of node:os",
    ]
  ) assertTrue(rules.includes(expected), `expected ${expected} in ${rules.join(", ")}`);
  // Comments, strings and a "from" inside a type are not imports.
  assertEquals(rules.filter((r) => /^(4|9|11):/.test(r)), []);
});

Deno.test("purity check fails on a deliberately impure file and exits non-zero", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rustkvd-purity-" });
  try {
    await Deno.writeTextFile(`${dir}/impure.ts`, impureSource);
    await Deno.writeTextFile(
      `${dir}/pure.ts`,
      `export function add(a: number, b: number) {\n  return a + b;\n}\n`,
    );
    const violations = await checkDirectory(dir);
    assertTrue(violations.length >= 9 && violations.every((v) => v.file.endsWith("impure.ts")));
    const tool = new URL("../tools/check_raft_purity.ts", import.meta.url).pathname;
    const run = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", tool, dir],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(run.code, 1);
    assertTrue(new TextDecoder().decode(run.stderr).includes("impure.ts:6: wall clock"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the Raft core in lib/raft is pure", async () => {
  const dir = new URL("../lib/raft", import.meta.url).pathname;
  const violations = await checkDirectory(dir);
  assertEquals(violations.map((v) => `${v.file}:${v.line}: ${v.rule}`), []);
});
