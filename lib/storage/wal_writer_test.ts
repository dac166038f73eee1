import { IoError } from "../common/errors.ts";
import { assertEquals, assertRejects, assertTrue } from "../common/test_helpers.ts";
import type { FileHandle } from "./fs.ts";
import { MemFileSystem } from "./mem_fs.ts";
import { frameRecord, scanRecords } from "./record_log.ts";
import { WalWriter } from "./wal_writer.ts";

/**
 * A MemFileSystem file with a one-step durable append (like the real disk's
 * write thread), whose appendDurable calls are logged and can be held or
 * made to fail.
 */
class OneStepFile implements FileHandle {
  calls: string[] = [];
  hold: Promise<void> | undefined;
  fail = false;
  constructor(readonly inner: FileHandle) {}
  get path() {
    return this.inner.path;
  }
  read(offset: number, length: number) {
    return this.inner.read(offset, length);
  }
  append(data: Uint8Array) {
    this.calls.push("append");
    return this.inner.append(data);
  }
  async appendDurable(data: Uint8Array): Promise<void> {
    this.calls.push("appendDurable");
    await this.hold;
    if (this.fail) throw new IoError(this.path, "EIO (injected)");
    await this.inner.append(data);
    await this.inner.syncData();
  }
  expectAppendDurable() {
    this.calls.push("expect");
  }
  preallocate(until: number) {
    return this.inner.preallocate(until);
  }
  syncData() {
    this.calls.push("syncData");
    return this.inner.syncData();
  }
  truncate(size: number) {
    return this.inner.truncate(size);
  }
  size() {
    return this.inner.size();
  }
  close() {
    return this.inner.close();
  }
}

const record = (s: string) => frameRecord(new TextEncoder().encode(s));

async function oneStepWriter() {
  const fs = new MemFileSystem();
  await fs.mkdir("/w");
  const file = new OneStepFile(await fs.create("/w/000001.log"));
  await fs.syncDir("/w");
  return { fs, file, writer: new WalWriter(1, file, 0) };
}

function durableRecords(fs: MemFileSystem): string[] {
  const scan = scanRecords(fs.crashClone().fileBytes("/w/000001.log"), "/w/000001.log");
  return scan.records.map((r) => new TextDecoder().decode(r.payload));
}

Deno.test("wal writer: a one-step durable append runs whileWriting beside the I/O, onWritten after", async () => {
  const { fs, file, writer } = await oneStepWriter();
  writer.expectAppendDurable();
  let release!: () => void;
  file.hold = new Promise((resolve) => (release = resolve));
  const events: string[] = [];
  const done = writer.appendDurable(record("a"), 1, {
    whileWriting: () => events.push("whileWriting"),
    onWritten: () => events.push("onWritten"),
  });
  // Let the write start: whileWriting runs while it is still held.
  for (let i = 0; i < 10; i++) await Promise.resolve();
  assertEquals(events, ["whileWriting"]);
  release();
  await done;
  assertEquals(events, ["whileWriting", "onWritten"]);
  assertEquals(file.calls, ["expect", "appendDurable"], "one file call, no separate fsync");
  assertEquals(durableRecords(fs), ["a"], "durable once it resolved");
  assertEquals(writer.syncCount, 1);
});

Deno.test("wal writer: a two-step durable append runs onWritten only once its bytes are durable", async () => {
  const { fs, writer } = await oneStepWriter();
  await writer.append(record("a"), 1); // written, not synced: the next durable append takes two steps
  let durableAtHook: string[] | undefined;
  await writer.appendDurable(record("b"), 1, {
    onWritten: () => (durableAtHook = durableRecords(fs)),
  });
  assertEquals(durableAtHook, ["a", "b"]);
});

Deno.test("wal writer: written but unsynced bytes make a durable append take write + fsync", async () => {
  const { fs, file, writer } = await oneStepWriter();
  await writer.append(record("a"), 1); // written, not synced
  file.calls = [];
  await writer.appendDurable(record("b"), 1);
  assertEquals(file.calls, ["append", "syncData"], "the fsync covers the earlier write too");
  assertEquals(durableRecords(fs), ["a", "b"]);
  // Everything is durable now: the next one is a single step again.
  file.calls = [];
  await writer.appendDurable(record("c"), 1);
  assertEquals(file.calls, ["appendDurable"]);
  // Buffered records go first, in the same write, so they take the two-step path.
  writer.appendBuffered(record("d"), 1);
  file.calls = [];
  await writer.appendDurable(record("e"), 1);
  assertEquals(file.calls, ["append", "syncData"]);
  assertEquals(durableRecords(fs), ["a", "b", "c", "d", "e"]);
});

Deno.test("wal writer: a failed one-step durable append breaks the writer for good", async () => {
  const { file, writer } = await oneStepWriter();
  await writer.appendDurable(record("a"), 1);
  file.fail = true;
  let ranWhileWriting = false;
  await assertRejects(
    () => writer.appendDurable(record("b"), 1, { whileWriting: () => (ranWhileWriting = true) }),
    IoError,
    "EIO",
  );
  assertTrue(ranWhileWriting, "the hook ran beside the failed write");
  assertTrue(writer.broken !== undefined, "broken: which bytes landed is unknown");
  file.fail = false;
  await assertRejects(() => writer.appendDurable(record("c"), 1), IoError);
  await assertRejects(() => writer.append(record("c"), 1), IoError);
});

Deno.test("wal writer: a hook that throws breaks the writer, on either path", async () => {
  for (const oneStep of [true, false]) {
    const fs = new MemFileSystem();
    await fs.mkdir("/w");
    const inner = await fs.create("/w/000001.log");
    const writer = new WalWriter(1, oneStep ? new OneStepFile(inner) : inner, 0);
    const failing = {
      whileWriting: () => {
        throw new Error("half done");
      },
    };
    await assertRejects(() => writer.appendDurable(record("a"), 1, failing), Error, "half done");
    assertTrue(writer.broken !== undefined, `broken (one-step: ${oneStep})`);
    await assertRejects(() => writer.appendDurable(record("b"), 1), Error, "half done");
  }
});
