/**
 * `deno task compile`: builds the two self-contained executables,
 * dist/rustkvd-server and dist/rustkvd-cli, each with only the permissions it
 * needs and with proto/ embedded. Extra arguments are passed to `deno compile`
 * (for example `--target aarch64-apple-darwin`).
 *
 * `deno compile` needs Deno's `denort` runtime, which it normally downloads.
 * Offline, point DENORT_BIN at a local denort binary of the same version and
 * target; Deno then uses it instead of downloading.
 *
 * @module
 */

import { cliPermissions, serverPermissions, serverV8Flags } from "./permissions.ts";

const targets = [
  {
    name: "rustkvd-server",
    entry: "server.ts",
    permissions: [...serverPermissions, ...serverV8Flags],
  },
  {
    name: "rustkvd-cli",
    entry: "cli.ts",
    permissions: cliPermissions,
  },
];

const root = new URL("..", import.meta.url).pathname;
const suffix = Deno.args.some((a) => a.includes("windows")) ? ".exe" : "";
const targetIndex = Deno.args.indexOf("--target");
const outDir = targetIndex >= 0 ? `dist/${Deno.args[targetIndex + 1]}` : "dist";
if (Deno.env.get("DENORT_BIN")) console.log(`using DENORT_BIN=${Deno.env.get("DENORT_BIN")}`);

for (const t of targets) {
  const args = [
    "compile",
    ...t.permissions,
    "--include",
    "proto/",
    "--output",
    `${outDir}/${t.name}${suffix}`,
    ...Deno.args,
    t.entry,
  ];
  console.log(`deno ${args.join(" ")}`);
  const { code } = await new Deno.Command(Deno.execPath(), { args, cwd: root }).spawn().status;
  if (code !== 0) {
    console.error(
      `compile of ${t.name} failed (exit ${code}). Offline? Set DENORT_BIN to a local denort ${Deno.version.deno} binary.`,
    );
    Deno.exit(code);
  }
}
