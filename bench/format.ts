/**
 * Number formats shared by the cluster benchmark's progress lines and its
 * table, so the two always print a figure the same way.
 *
 * @module
 */

/** Rounded, with thousands separators: "12,558". */
export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** Milliseconds at a precision that suits their size: "133", "28.4", "2.59". */
export function fmtMs(n: number): string {
  return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
}
