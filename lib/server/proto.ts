/**
 * Loads proto/kvstore.proto once. The path is resolved from this module's
 * URL, which works under `deno run` and inside a `deno compile` binary (the
 * compile task embeds proto/ with --include at the same relative path).
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

/** Absolute path of the wire contract. */
export const protoPath = new URL("../../proto/kvstore.proto", import.meta.url).pathname;

/**
 * Options shared by server and client so both see the same JS shapes: field
 * names as in the .proto, uint64 as number (revisions stay below 2^53), enums
 * as strings, bytes as Buffer (a Uint8Array).
 */
export const protoLoaderOptions: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

let cached: grpc.GrpcObject | undefined;
let cachedDefinition: protoLoader.PackageDefinition | undefined;

/** The parsed definition: per service, each method's path and serializers (the server uses it). */
export function loadRustkvdDefinition(): protoLoader.PackageDefinition {
  cachedDefinition ??= protoLoader.loadSync(protoPath, protoLoaderOptions);
  return cachedDefinition;
}

/** The `rustkvd` package: service constructors and message types. */
export function loadRustkvdPackage(): grpc.GrpcObject {
  if (!cached) {
    cached = grpc.loadPackageDefinition(loadRustkvdDefinition()).rustkvd as grpc.GrpcObject;
  }
  return cached;
}
