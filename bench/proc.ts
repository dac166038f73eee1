/**
 * What the cluster benchmark reads from /proc: the CPU model for its setup
 * line and each server's resident memory. Read through `cat` because Deno
 * grants /proc only with --allow-all, and the bench runs with --allow-run
 * instead. Off Linux every figure is "unknown" or NaN rather than an error.
 *
 * @module
 */

async function readProc(path: string): Promise<string> {
  try {
    const out = await new Deno.Command("cat", { args: [path], stdout: "piped", stderr: "null" })
      .output();
    return out.success ? new TextDecoder().decode(out.stdout) : "";
  } catch {
    return "";
  }
}

/** The CPU model, so a table says which machine produced it. */
export async function cpuModel(): Promise<string> {
  const info = await readProc("/proc/cpuinfo");
  return info.match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim() ?? "unknown CPU";
}

/** Resident memory of a process in MiB (VmRSS), to compare what each store costs to keep up. */
export async function rssMiB(pid: number): Promise<number> {
  const status = await readProc(`/proc/${pid}/status`);
  return Number(status.match(/^VmRSS:\s+(\d+)\s+kB$/m)?.[1] ?? NaN) / 1024;
}
