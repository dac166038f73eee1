/**
 * The Random seam. Election timeouts, simulations, jittered backoff and test
 * data all draw from a Random so that one printed seed replays a whole run.
 *
 * @module
 */

/** A source of uniformly distributed numbers. */
export interface Random {
  /** A uniform 32-bit unsigned integer. */
  nextU32(): number;
  /** A uniform integer in [0, maxExclusive). */
  nextInt(maxExclusive: number): number;
  /** A uniform float in [0, 1). */
  nextFloat(): number;
}

/**
 * Deterministic PRNG: sfc32 seeded through splitmix32. Small state, fast, and
 * good enough statistically for scheduling and test data (not for secrets).
 */
export class SeededRandom implements Random {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(readonly seed: number) {
    let s = seed >>> 0;
    const splitmix = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#a = splitmix();
    this.#b = splitmix();
    this.#c = splitmix();
    this.#d = splitmix();
    for (let i = 0; i < 12; i++) this.nextU32();
  }

  nextU32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  nextInt(maxExclusive: number): number {
    if (!(maxExclusive > 0) || !Number.isSafeInteger(maxExclusive)) {
      throw new RangeError(`nextInt needs a positive integer bound, got ${maxExclusive}`);
    }
    if (maxExclusive <= 0x1_0000_0000) {
      // Rejection sampling removes the modulo bias.
      const limit = 0x1_0000_0000 - (0x1_0000_0000 % maxExclusive);
      for (;;) {
        const x = this.nextU32();
        if (x < limit) return x % maxExclusive;
      }
    }
    return Math.floor(this.nextFloat() * maxExclusive);
  }

  nextFloat(): number {
    // 53 random bits.
    const hi = this.nextU32() >>> 5;
    const lo = this.nextU32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** An independent generator derived from this one (for per-node streams). */
  fork(): SeededRandom {
    return new SeededRandom(this.nextU32());
  }
}

/** A Random seeded from the operating system, for production use. */
export function systemRandom(): SeededRandom {
  const seed = new Uint32Array(1);
  crypto.getRandomValues(seed);
  return new SeededRandom(seed[0]);
}

/**
 * The seed a randomized test should use: `SEED` from the environment when set
 * (to replay a failure), else a fresh one. Tests print it on failure.
 */
export function testSeed(): number {
  const fromEnv = Deno.env.get("SEED");
  if (fromEnv !== undefined && fromEnv !== "") {
    const n = Number(fromEnv);
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`SEED must be a non-negative integer`);
    return n >>> 0;
  }
  const seed = new Uint32Array(1);
  crypto.getRandomValues(seed);
  return seed[0];
}
