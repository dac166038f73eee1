/**
 * Fails when the pure Raft core reaches for the outside world. `lib/raft` must
 * be a deterministic function of its inputs (ticks, messages, proposals and an
 * injected Random) so the simulator can replay any run from a seed. This scans
 * the source with comments and string literals removed and reports each use of
 * a clock, timer, global randomness, Deno API, async code or I/O import.
 *
 * Usage: deno run --allow-read tools/check_raft_purity.ts [dir...]
 *
 * @module
 */

/** One forbidden construct found in a file. */
export interface PurityViolation {
  file: string;
  line: number;
  rule: string;
  text: string;
}

const forbidden: Array<{ rule: string; pattern: RegExp }> = [
  { rule: "wall clock (Date.now)", pattern: /\bDate\s*\.\s*now\b/ },
  { rule: "new Date()", pattern: /\bnew\s+Date\b/ },
  { rule: "monotonic clock (performance.now)", pattern: /\bperformance\s*\.\s*now\b/ },
  { rule: "global randomness (Math.random)", pattern: /\bMath\s*\.\s*random\b/ },
  { rule: "crypto randomness", pattern: /\bcrypto\s*\.\s*(getRandomValues|randomUUID)\b/ },
  {
    rule: "timer",
    pattern: /\b(setTimeout|setInterval|setImmediate|queueMicrotask|clearTimeout|clearInterval)\b/,
  },
  { rule: "Deno API", pattern: /\bDeno\s*\./ },
  { rule: "async code", pattern: /\basync\b/ },
  { rule: "await", pattern: /\bawait\b/ },
  { rule: "Promise", pattern: /\bPromise\b/ },
  { rule: "fetch", pattern: /\bfetch\s*\(/ },
  { rule: "process/global I/O", pattern: /\b(process|globalThis)\s*\./ },
];

/** Import/export clauses at the start of a statement, side-effect imports and dynamic imports. */
const importPattern =
  /^[ \t]*(?:import|export)\s+(?:type\s+)?(?:\{[^}]*\}|\*(?:\s+as\s+\w+)?|\w+(?:\s*,\s*\{[^}]*\})?)\s*from\s*(["'])([^"']+)\1|^[ \t]*import\s*(["'])([^"']+)\3|\bimport\s*\(\s*(["'])([^"']+)\5/gm;

/**
 * Blanks out comments and the contents of string and template literals,
 * keeping newlines so line numbers still match. Import specifiers are kept
 * (they are checked separately).
 */
export function stripCommentsAndStrings(source: string): string {
  let out = "";
  let i = 0;
  const n = source.length;
  while (i < n) {
    const c = source[i];
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      while (i < n && source[i] !== "\n") i++;
    } else if (c === "/" && next === "*") {
      i += 2;
      while (i < n && !(source[i] === "*" && source[i + 1] === "/")) {
        if (source[i] === "\n") out += "\n";
        i++;
      }
      i += 2;
    } else if (c === '"' || c === "'" || c === "`") {
      const quote = c;
      out += quote;
      i++;
      while (i < n && source[i] !== quote) {
        if (source[i] === "\\") i++;
        else if (source[i] === "\n") out += "\n";
        i++;
      }
      out += quote;
      i++;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Every forbidden construct in one file's source. */
export function findImpurities(source: string, file: string): PurityViolation[] {
  const violations: PurityViolation[] = [];
  const lines = source.split("\n");
  const code = stripCommentsAndStrings(source).split("\n");
  code.forEach((line, index) => {
    for (const { rule, pattern } of forbidden) {
      if (pattern.test(line)) {
        violations.push({ file, line: index + 1, rule, text: lines[index].trim() });
      }
    }
  });
  for (const match of source.matchAll(importPattern)) {
    const specifier = match[2] ?? match[4] ?? match[6];
    const relative = specifier.startsWith("./") || specifier.startsWith("../");
    const allowed = relative && !specifier.includes("/storage/") && !specifier.includes("/node/") &&
      !specifier.includes("/server/") && !specifier.includes("/client/");
    if (!allowed) {
      const line = source.slice(0, match.index).split("\n").length;
      violations.push({ file, line, rule: `import of ${specifier}`, text: lines[line - 1].trim() });
    }
  }
  return violations;
}

/**
 * Scans every .ts file under `dir` (recursively), except tests (`*_test.ts`):
 * they drive the core from outside and need `Deno.test`.
 */
export async function checkDirectory(dir: string): Promise<PurityViolation[]> {
  const violations: PurityViolation[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) violations.push(...await checkDirectory(path));
    else if (entry.isFile && entry.name.endsWith(".ts") && !entry.name.endsWith("_test.ts")) {
      violations.push(...findImpurities(await Deno.readTextFile(path), path));
    }
  }
  return violations;
}

if (import.meta.main) {
  const dirs = Deno.args.length > 0 ? Deno.args : ["lib/raft"];
  const violations: PurityViolation[] = [];
  for (const dir of dirs) violations.push(...await checkDirectory(dir));
  for (const v of violations) console.error(`${v.file}:${v.line}: ${v.rule}: ${v.text}`);
  if (violations.length > 0) {
    console.error(`raft purity check: ${violations.length} violation(s)`);
    Deno.exit(1);
  }
  console.log(`raft purity check: ${dirs.join(", ")} is pure`);
}
