/**
 * A latency histogram in the HDR style: log-linear buckets with a bounded
 * relative error (under 0.2 %), constant memory, O(1) record, and exact
 * merging, so percentiles stay correct whatever the spread of latencies.
 * Values are microseconds. (npm's hdr-histogram-js would fit, but it is a
 * runtime dependency for about a hundred lines we can own: the bench is part
 * of the CLI binary, and this one is tested against sorted data.)
 *
 * @module
 */

/** Sub-buckets per power of two: 512 gives a worst-case relative error of 1/512. */
const subBucketBits = 9;
const subBucketCount = 1 << subBucketBits;
/** Values below this are counted exactly (one bucket each). */
const exactLimit = 2 * subBucketCount;
/** Largest exponent: values up to about 2^41 µs (25 days); larger ones are clamped. */
const maxExponent = 32;
const bucketCount = exactLimit + maxExponent * subBucketCount;

/**
 * Bucket of value v: v itself below exactLimit; above, with e such that
 * v / 2^e falls in [subBucketCount, 2 * subBucketCount), the bucket
 * exactLimit + (e - 1) * subBucketCount + (v / 2^e - subBucketCount).
 */
function bucketIndex(v: number): number {
  if (v < exactLimit) return v;
  const e = Math.min(maxExponent, Math.floor(Math.log2(v)) - subBucketBits);
  const sub = Math.min(2 * subBucketCount - 1, Math.floor(v / 2 ** e));
  return exactLimit + (e - 1) * subBucketCount + (sub - subBucketCount);
}

/** The smallest value that falls in bucket `index`. */
function bucketLowValue(index: number): number {
  if (index < exactLimit) return index;
  const k = index - exactLimit;
  const e = Math.floor(k / subBucketCount) + 1;
  const sub = (k % subBucketCount) + subBucketCount;
  return sub * 2 ** e;
}

/** Records latencies and answers percentile questions. */
export class Histogram {
  #counts = new Float64Array(bucketCount);
  #total = 0;
  #sum = 0;
  #max = 0;
  #min = Number.POSITIVE_INFINITY;

  /** Adds one value (microseconds, non-negative; fractions are rounded). */
  record(us: number): void {
    const v = Math.max(0, Math.round(us));
    this.#counts[bucketIndex(v)]++;
    this.#total++;
    this.#sum += v;
    if (v > this.#max) this.#max = v;
    if (v < this.#min) this.#min = v;
  }

  /** Adds every value of `other`. */
  merge(other: Histogram): void {
    for (let i = 0; i < this.#counts.length; i++) this.#counts[i] += other.#counts[i];
    this.#total += other.#total;
    this.#sum += other.#sum;
    this.#max = Math.max(this.#max, other.#max);
    this.#min = Math.min(this.#min, other.#min);
  }

  /** Number of values recorded. */
  get count(): number {
    return this.#total;
  }

  /** Largest value recorded (exact). */
  get max(): number {
    return this.#max;
  }

  /** Smallest value recorded (exact); 0 when empty. */
  get min(): number {
    return this.#total === 0 ? 0 : this.#min;
  }

  /** Mean of the values recorded. */
  get mean(): number {
    return this.#total === 0 ? 0 : this.#sum / this.#total;
  }

  /**
   * The value at percentile `p` (0..100): the smallest recorded bucket whose
   * cumulative count reaches p % of all values, reported as that bucket's low
   * end (within 0.2 % of the true value), and never above the exact max;
   * the last rank is the exact max.
   */
  percentile(p: number): number {
    if (this.#total === 0) return 0;
    // The rank in integer steps of a millionth of a percent: (99.9 / 100) * 1000 is
    // 999.0000000000001 in floating point, and its ceiling one rank too high.
    const millionths = Math.round(Math.min(100, Math.max(0, p)) * 1e6);
    const rank = Math.max(1, Math.ceil((millionths * this.#total) / 1e8 - 1e-9));
    if (rank >= this.#total) return this.#max;
    let seen = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      seen += this.#counts[i];
      if (seen >= rank) return Math.min(this.#max, Math.max(this.min, bucketLowValue(i)));
    }
    return this.#max;
  }
}
