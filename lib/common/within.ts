/**
 * A bound on how long to wait for a peer. A peer whose host loses power or
 * is cut off sends neither data nor a reset, so without one a wait on it
 * (an acknowledgement, a socket drain, the next frame) never ends.
 *
 * @module
 */

import { TimeoutError } from "./errors.ts";

/**
 * `p`, or a TimeoutError naming `what` when it has not settled within `ms`.
 * The timer is cleared either way, so it never keeps a process alive.
 */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what}: nothing for ${ms} ms`)), ms);
  });
  return Promise.race([p, expired]).finally(() => clearTimeout(timer));
}
