import { DiskFullError } from "../common/errors.ts";
import { assertEquals, assertRejects, assertTrue } from "../common/test_helpers.ts";
import { mapIoError } from "./deno_fs.ts";
import { SyncWriteError, SyncWriteThread, waitForValue } from "./sync_write_thread.ts";

Deno.test("durable-write thread: queued writes land at their offsets in the file it opened", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rustkvd-sync-thread-" });
  try {
    const path = `${dir}/f`;
    await Deno.writeFile(path, new Uint8Array(0));
    const thread = SyncWriteThread.shared();
    if (thread === undefined) throw new Error("the durable-write thread did not start");
    const opened = await thread.open(path);
    const stat = await Deno.stat(path);
    assertEquals([opened.ino, opened.dev], [stat.ino, stat.dev], "it reports the file it opened");
    // Issued together: they queue, and each resolves once its bytes are written.
    const writes = [];
    for (let i = 9; i >= 0; i--) {
      writes.push(thread.write(opened.slot, i * 1000, new Uint8Array(1000).fill(i + 1)));
    }
    thread.expectWrite(); // a hint while busy is harmless
    await Promise.all(writes);
    await thread.close(opened.slot);
    const bytes = await Deno.readFile(path);
    assertEquals(bytes.length, 10_000);
    for (let i = 0; i < 10; i++) {
      assertTrue(bytes.subarray(i * 1000, (i + 1) * 1000).every((b) => b === i + 1), `write ${i}`);
    }
    // Writes to a closed slot fail; the thread keeps serving.
    await assertRejects(() => thread.write(opened.slot, 0, new Uint8Array(1)), SyncWriteError);
    const again = await thread.open(path);
    await thread.write(again.slot, 10_000, new Uint8Array([7]));
    await thread.close(again.slot);
    assertEquals((await Deno.readFile(path)).length, 10_001);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("durable-write thread: failures carry the system's error code", async () => {
  const thread = SyncWriteThread.shared()!;
  const missing = await thread.open("/nonexistent-rustkvd-dir/f").catch((e) => e);
  assertTrue(missing instanceof SyncWriteError, "a missing file fails the open");
  assertEquals((missing as SyncWriteError).code, "ENOENT");
  const dir = await Deno.makeTempDir({ prefix: "rustkvd-sync-thread-" });
  try {
    const notAFile = await thread.open(dir).catch((e) => e);
    assertEquals((notAFile as SyncWriteError).code, "EISDIR");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  // A full disk reaches the engine as DiskFullError. (/dev/full would fail a real write so,
  // but Deno opens devices only with --allow-all.)
  const full = new SyncWriteError("ENOSPC", "No space left on device (os error 28)");
  assertTrue(mapIoError("/data/000001.log", full) instanceof DiskFullError, "ENOSPC is disk full");
});

Deno.test("durable-write thread: an idle thread does not keep a process alive", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rustkvd-sync-thread-" });
  const module = new URL("./sync_write_thread.ts", import.meta.url).href;
  const script = `
    import { SyncWriteThread } from ${JSON.stringify(module)};
    const path = ${JSON.stringify(`${dir}/f`)};
    await Deno.writeFile(path, new Uint8Array(0));
    const t = SyncWriteThread.shared();
    const { slot } = await t.open(path);
    await t.write(slot, 0, new TextEncoder().encode("done"));
    console.log("wrote");
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Bounded: a process the thread kept alive is killed (by its pid) and fails the test.
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  try {
    const out = await child.output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    assertEquals(new TextDecoder().decode(out.stdout).trim(), "wrote");
    assertEquals(new TextDecoder().decode(await Deno.readFile(`${dir}/f`)), "done");
  } finally {
    clearTimeout(timer);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("durable-write thread: a stale wake-up is not taken for the answer", async () => {
  // A pending Atomics.waitAsync does not keep the event loop alive (the thread's callers hold
  // a reference to the worker meanwhile); a timer does it here.
  const keepAlive = setInterval(() => {}, 1_000);
  try {
    await staleWakeUp();
  } finally {
    clearInterval(keepAlive);
  }
});

async function staleWakeUp() {
  const ctl = new Int32Array(new SharedArrayBuffer(8));
  let stopped = false;
  let answered: boolean | undefined;
  const waiting = waitForValue(ctl, 1, 1, () => stopped).then((ok) => (answered = ok));
  // The late notify of an earlier request: a wake-up with the value unchanged.
  Atomics.notify(ctl, 1);
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 1));
  assertEquals(answered, undefined, "still waiting after a stale wake-up");
  Atomics.store(ctl, 1, 1);
  Atomics.notify(ctl, 1);
  await waiting;
  assertEquals(answered, true);
  // A helper that dies ends the wait with false: its watcher sets the flag and notifies.
  const dying = waitForValue(ctl, 1, 2, () => stopped);
  stopped = true;
  Atomics.notify(ctl, 1);
  assertEquals(await dying, false);
}
