/**
 * bench/RESULTS.md holds one section per benchmark that records its results
 * there (`deno task bench cluster`, `deno task bench resp`), each between
 * `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`. A benchmark replaces
 * only its own section, so rerunning one never erases what another wrote;
 * the file is then formatted the way `deno fmt --check` expects, so a fresh
 * run can be committed as is.
 *
 * @module
 */

/** Where the benchmarks record their results. */
export const resultsPath: URL = new URL("./RESULTS.md", import.meta.url);

const configPath = new URL("../deno.json", import.meta.url).pathname;

/** What a missing results file starts as, before any section is added. */
const preamble = [
  "# Benchmark results",
  "",
  "Each section is written by the benchmark it names; rerunning one replaces only its own section.",
  "Compare ratios measured in one run, not absolutes across machines.",
  "",
].join("\n");

function markers(name: string): { open: string; close: string } {
  if (!/^[a-z0-9-]+$/.test(name)) throw new Error(`bad results section name ${name}`);
  return { open: `<!-- bench:${name} -->`, close: `<!-- /bench:${name} -->` };
}

/**
 * `text` with section `name` replaced by `body` (appended at the end when
 * absent). Pure, so the splice can be reasoned about apart from the file.
 */
export function replaceSection(text: string, name: string, body: string): string {
  const { open, close } = markers(name);
  const section = `${open}\n\n${body.trim()}\n\n${close}`;
  const start = text.indexOf(open);
  if (start < 0) return `${text.trimEnd()}\n\n${section}\n`;
  const end = text.indexOf(close, start + open.length);
  if (end < 0) throw new Error(`${open} has no ${close}; fix bench/RESULTS.md by hand`);
  return text.slice(0, start) + section + text.slice(end + close.length);
}

/**
 * Replaces section `name` of bench/RESULTS.md with `body` (creating the file
 * or the section when absent) and formats the file; returns its path.
 */
export async function writeResultsSection(name: string, body: string): Promise<string> {
  let text = preamble;
  try {
    text = await Deno.readTextFile(resultsPath);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await Deno.writeTextFile(resultsPath, replaceSection(text, name, body));
  const fmt = await new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--quiet", "--config", configPath, resultsPath.pathname],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!fmt.success) {
    console.log(
      `warning: deno fmt of ${resultsPath.pathname} failed: ${
        new TextDecoder().decode(fmt.stderr).trim()
      }`,
    );
  }
  return resultsPath.pathname;
}
