/** lookupCommand: case-insensitive names, answered right however lookups of tables and names alternate. */
import { assertEquals } from "../../lib/common/test_helpers.ts";
import { buildTable, type CommandSpec, lookupCommand } from "../../lib/resp/command_table.ts";

const enc = new TextEncoder();
const spec = (name: string): CommandSpec => ({ name, arity: 2, write: false, handler: () => {} });

Deno.test("lookupCommand: alternating names, cases and tables each get their own spec", () => {
  const a = buildTable([spec("get"), spec("set"), spec("x".repeat(40))]);
  const b = buildTable([spec("get")]);
  const look = (t: Map<string, CommandSpec>, name: string) => lookupCommand(t, enc.encode(name));
  const steps: Array<[Map<string, CommandSpec>, string, string | undefined]> = [
    [a, "GET", "get"],
    [a, "GET", "get"],
    [a, "get", "get"],
    [a, "SET", "set"],
    [a, "SEX", undefined],
    [a, "SET", "set"],
    [b, "SET", undefined], // the same name in another table
    [b, "GeT", "get"],
    [a, "GeT", "get"],
    [a, "X".repeat(40), "x".repeat(40)],
    [a, "GE", undefined],
    [a, "GETT", undefined],
  ];
  for (const [table, name, want] of steps) {
    assertEquals(look(table, name)?.name, want, name);
    if (want !== undefined) assertEquals(look(table, name), table.get(want), name);
  }
});
