/**
 * One process per data directory. A second server started on a directory in
 * use (the same command run twice, or two node ids pointed at one path)
 * would open the engine and the Raft log under the first one's feet, and
 * delete files the first one still writes. The first thing a node does with
 * its data dir is take an exclusive advisory lock (flock) on `LOCK` in it;
 * the kernel drops the lock when the process exits, however it exits, so a
 * crash never leaves a stale lock behind.
 *
 * Deno's file lock blocks until granted, so an attempt gives up after a
 * short wait; the abandoned attempt ends when the holder exits.
 *
 * @module
 */

/** The lock file inside a data dir. */
export const lockFileName = "LOCK";

/** How long an attempt waits for a lock held by another process before it gives up. */
const lockWaitMs = 1_000;

/** Why a data dir cannot be used: another process holds its lock. */
export class DataDirInUseError extends Error {
  override name = "DataDirInUseError";
}

/** A held data-dir lock; `release` when the node has closed its files. */
export class DataDirLock {
  #file: Deno.FsFile | undefined;

  private constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  /** Takes the lock on `dataDir` (which must exist), or throws DataDirInUseError. */
  static async acquire(dataDir: string, waitMs = lockWaitMs): Promise<DataDirLock> {
    const path = `${dataDir.replace(/\/+$/, "")}/${lockFileName}`;
    const file = await Deno.open(path, { read: true, write: true, create: true });
    let timer: ReturnType<typeof setTimeout> | undefined;
    let granted: boolean;
    try {
      granted = await Promise.race([
        file.lock(true).then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), waitMs))),
      ]).finally(() => clearTimeout(timer));
    } catch (e) {
      file.close();
      throw e;
    }
    if (!granted) {
      file.close();
      throw new DataDirInUseError(
        `data dir ${dataDir} is in use by another process (it holds ${path}); ` +
          "stop that server first, or give this one another --data-dir",
      );
    }
    return new DataDirLock(file);
  }

  /** Lets another process use the data dir. */
  release(): void {
    const file = this.#file;
    this.#file = undefined;
    if (!file) return;
    try {
      file.unlockSync();
    } finally {
      file.close();
    }
  }
}
