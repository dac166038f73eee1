/**
 * `deno task bench [storage|raft|raft-log|resp|cluster ...]`: runs the named benchmark
 * suites (all of them when none is named). Each suite prints its setup and a
 * table of results; suites are not timed tests and never run in `deno task test`.
 *
 * @module
 */

const suites: Record<string, () => Promise<{ main(args: string[]): Promise<void> }>> = {
  storage: () => import("./storage.ts"),
  raft: () => import("./raft.ts"),
  "raft-log": () => import("./raft_log.ts"),
  resp: () => import("./resp.ts"),
  cluster: () => import("./cluster.ts"),
};

const [name, ...rest] = Deno.args;
const selected = name === undefined ? Object.keys(suites) : [name];
for (const suite of selected) {
  const load = suites[suite];
  if (!load) {
    console.error(
      `unknown benchmark suite ${JSON.stringify(suite)}; available: ${
        Object.keys(suites).join(", ")
      }`,
    );
    Deno.exit(2);
  }
  console.log(`\n=== bench ${suite} ===`);
  await (await load()).main(rest);
}
