/**
 * Small byte arrays carved out of shared slabs. In Deno every `new
 * Uint8Array(n)`, `slice` or `Uint8Array.from` gets its own backing store
 * from the system allocator — about a microsecond each on our machines
 * (measured: `new Uint8Array(8)` 1.08 µs, a slab `subarray` 0.03 µs), and a
 * write passes through dozens of small encodings (frames, keys, records).
 * Like Node's Buffer pool, an array of up to `maxPooledBytes` here is a view
 * of a 64 KiB slab; the slab is freed once no view of it is left.
 *
 * The price is retention: one small array kept for long keeps its whole slab
 * alive. Use it for bytes that are copied on soon (encodings on their way to
 * a socket, a file or a batch) or kept alongside many neighbours of the same
 * age, not for scattered long-lived values.
 *
 * @module
 */

/** Arrays larger than this get their own allocation. */
export const maxPooledBytes = 4096;

const slabBytes = 64 * 1024;

let slab = new Uint8Array(slabBytes);
let used = 0;

/** A zero-filled array of `n` bytes (a slab view when `n` is small). */
export function allocBytes(n: number): Uint8Array {
  if (n > maxPooledBytes) return new Uint8Array(n);
  if (used + n > slabBytes) {
    slab = new Uint8Array(slabBytes);
    used = 0;
  }
  const out = slab.subarray(used, used + n);
  // Keep views 8-byte aligned so a later DataView or typed view of one is cheap.
  used += (n + 7) & ~7;
  return out;
}

/** A copy of `bytes` (pooled when small). */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  const out = allocBytes(bytes.length);
  out.set(bytes);
  return out;
}
