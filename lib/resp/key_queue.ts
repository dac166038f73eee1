/**
 * Runs tasks on the same key one after another, tasks on other keys freely.
 * Read-modify-write commands (INCR, APPEND, GETSET, ...) decide from the
 * value they read and write only if it is still current: run side by side
 * on one hot key, all but one of them lose each round and go again, and
 * under enough clients some never win. Queued per key, a node's own
 * commands on that key never race each other; only another node's, or a
 * plain write landing between the read and the write, can still make one
 * retry.
 *
 * @module
 */

import { byteString } from "../common/bytes.ts";

/** Per-key FIFO of async tasks; see the module doc. */
export class KeyQueue {
  /** The last task queued on each key with tasks running or waiting. */
  readonly #tails = new Map<string, Promise<unknown>>();

  /** Keys with tasks running or waiting (for tests). */
  get busyKeys(): number {
    return this.#tails.size;
  }

  /** Runs `task` after every task queued before it on `key`; settles as `task` does. */
  run<T>(key: Uint8Array, task: () => Promise<T>): Promise<T> {
    const id = byteString(key);
    const before = this.#tails.get(id);
    const result = before === undefined ? task() : before.then(task);
    const tail = result.then(noop, noop);
    this.#tails.set(id, tail);
    tail.then(() => {
      if (this.#tails.get(id) === tail) this.#tails.delete(id);
    });
    return result;
  }
}

const noop = () => {};
