/**
 * Always-on assertions (TigerBeetle style): they stay enabled in production
 * because a broken invariant in a replicated store must stop the process
 * before it writes or acknowledges anything wrong.
 *
 * @module
 */

/** Thrown when an internal invariant does not hold: a bug, never bad input. */
export class AssertionError extends Error {
  override name = "AssertionError";
}

/** Stops with an AssertionError when `condition` is false. */
export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new AssertionError(message);
}

/** Marks code that must be impossible to reach (exhaustive switches). */
export function unreachable(value: never, message = "unreachable"): never {
  throw new AssertionError(`${message}: ${String(value)}`);
}
