/**
 * The start of a length-prefixed unit (a peer frame, a gRPC message) that a
 * chunk of a byte stream ended inside, completed from later chunks. It holds
 * the unit's fixed-size head until that is whole, then a buffer of the
 * unit's exact size, and takes from each new chunk only the bytes it lacks:
 * joining the held bytes with every whole new chunk copied each chunk once
 * more, and a large unit spread over many chunks many times.
 *
 * @module
 */

import { emptyBytes } from "./bytes.ts";

/** A held partial unit (see the module comment). */
export class PartialUnit {
  #buf: Uint8Array = emptyBytes;
  #fill = 0;

  /** Whether bytes of an unfinished unit are held. */
  get pending(): boolean {
    return this.#fill > 0;
  }

  /** Whether the held bytes fill the buffer (the head, or the whole unit after `grow`). */
  get full(): boolean {
    return this.#fill === this.#buf.length;
  }

  /** The held bytes (the head, or the unit), valid until the next `hold`. */
  get bytes(): Uint8Array {
    return this.#buf;
  }

  /**
   * Copies `chunk[at..]` as the start of a unit of `size` bytes (the head's
   * size while the unit's size is not known yet): the chunk is not ours to keep.
   */
  hold(chunk: Uint8Array, at: number, size: number): void {
    this.#buf = new Uint8Array(size);
    this.#buf.set(chunk.subarray(at));
    this.#fill = chunk.length - at;
  }

  /** Takes the bytes the held buffer lacks from `chunk` at `pos`; returns the new position. */
  fill(chunk: Uint8Array, pos: number): number {
    const take = Math.min(this.#buf.length - this.#fill, chunk.length - pos);
    this.#buf.set(chunk.subarray(pos, pos + take), this.#fill);
    this.#fill += take;
    return pos + take;
  }

  /** The head is whole and says the unit has `size` bytes: hold it in a buffer of that size. */
  grow(size: number): void {
    const head = this.#buf;
    this.#buf = new Uint8Array(size);
    this.#buf.set(head);
  }

  /** Hands over the complete unit (a buffer of its own) and holds nothing. */
  take(): Uint8Array {
    const unit = this.#buf;
    this.#buf = emptyBytes;
    this.#fill = 0;
    return unit;
  }
}
