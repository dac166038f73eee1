/**
 * Shared foundations: assertions, the error family, limits, byte codecs,
 * checksums, and the Clock and Random seams.
 *
 * @module
 */
export * from "./assert.ts";
export * from "./errors.ts";
export * from "./limits.ts";
export * from "./bytes.ts";
export * from "./crc.ts";
export * from "./clock.ts";
export * from "./random.ts";
