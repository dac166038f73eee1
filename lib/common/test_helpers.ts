/**
 * Minimal assertion helpers for tests (jsr:@std/assert is unreachable from our
 * build machines). Failures throw with a rendering of both sides.
 *
 * @module
 */

import { inspect, isDeepStrictEqual } from "node:util";

/** Any error class, whatever its constructor takes. */
export type ErrorClass<E extends Error> = new (...args: never[]) => E;

/** Fails unless `actual` deep-equals `expected`. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new Error(
      `${message ? message + ": " : ""}values differ\n  actual:   ${
        inspect(actual, { depth: 6 })
      }\n  expected: ${inspect(expected, { depth: 6 })}`,
    );
  }
}

/** Fails unless `condition` is truthy. */
export function assertTrue(
  condition: unknown,
  message = "expected a true condition",
): asserts condition {
  if (!condition) throw new Error(message);
}

/** Fails unless `fn` throws an error of class `type` whose message contains `includes`. */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  type: ErrorClass<E>,
  includes?: string,
): E {
  try {
    fn();
  } catch (e) {
    return checkError(e, type, includes);
  }
  throw new Error(`expected ${type.name} to be thrown`);
}

/** Fails unless the promise rejects with `type` whose message contains `includes`. */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  type: ErrorClass<E>,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    return checkError(e, type, includes);
  }
  throw new Error(`expected a rejection with ${type.name}`);
}

function checkError<E extends Error>(
  e: unknown,
  type: ErrorClass<E>,
  includes?: string,
): E {
  if (!(e instanceof type)) {
    throw new Error(
      `expected ${type.name}, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`,
    );
  }
  if (includes !== undefined && !e.message.includes(includes)) {
    throw new Error(
      `expected the message to contain ${JSON.stringify(includes)}, got ${
        JSON.stringify(e.message)
      }`,
    );
  }
  return e;
}
