import { replaceSection } from "./results_file.ts";
import { assertEquals, assertThrows } from "../lib/common/test_helpers.ts";

Deno.test("results file: a section is replaced in place, others untouched; a new one is appended", () => {
  const text = [
    "# Benchmark results",
    "",
    "<!-- bench:cluster -->\n\nold cluster\n\n<!-- /bench:cluster -->",
    "",
    "<!-- bench:resp -->\n\nold resp\n\n<!-- /bench:resp -->",
    "",
  ].join("\n");
  const replaced = replaceSection(text, "cluster", "new cluster\n");
  assertEquals(replaced, text.replace("old cluster", "new cluster"));
  const added = replaceSection(text, "storage", "storage figures");
  assertEquals(
    added,
    `${text.trimEnd()}\n\n<!-- bench:storage -->\n\nstorage figures\n\n<!-- /bench:storage -->\n`,
  );
  assertThrows(() => replaceSection("<!-- bench:resp --> no end", "resp", "x"), Error, "no");
  assertThrows(() => replaceSection(text, "Bad Name", "x"), Error, "bad results section name");
});
