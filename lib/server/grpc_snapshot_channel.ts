/**
 * A snapshot transfer over gRPC's RaftInternal.InstallSnapshot, for
 * `--snapshot-transport grpc` (the native peer channel is the default and
 * measured faster). gRPC gives a client stream one answer at its end, while
 * the sender must learn where to resume before it streams, so a transfer is
 * two calls (proto/kvstore.proto, SnapshotChunk): a probe that returns the
 * records the receiver holds, then the stream from there, whose answer is
 * the receiver's final acknowledgement.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { maxGrpcMessageBytes } from "../common/limits.ts";
import { type PeerFrame, PeerFrameKind } from "../node/peer_frame.ts";
import type { SnapshotAckFrame, SnapshotChannel } from "../node/snapshot.ts";
import { loadRustkvdPackage } from "./proto.ts";

// deno-lint-ignore no-explicit-any
type Wire = any;

/** How long a closed transfer's stream may take to finish before it is cancelled. */
const closeGraceMs = 2_000;

/** One snapshot transfer to one peer over two InstallSnapshot calls. */
export class GrpcSnapshotChannel implements SnapshotChannel {
  #client: grpc.Client | undefined;
  #begin: Wire | undefined;
  /** The streaming call, opened on the first write after the probe's answer. */
  #stream: grpc.ClientWritableStream<Wire> | undefined;
  #answers: Promise<SnapshotAckFrame>[] = [];
  #probed = false;

  constructor(readonly addr: string, readonly clusterId: string, readonly selfId: string) {}

  open(): Promise<void> {
    const Service = loadRustkvdPackage().RaftInternal as grpc.ServiceClientConstructor;
    this.#client = new Service(this.addr, grpc.credentials.createInsecure(), {
      "grpc.max_send_message_length": maxGrpcMessageBytes,
      "grpc.max_receive_message_length": maxGrpcMessageBytes,
    });
    return Promise.resolve();
  }

  async write(frame: PeerFrame): Promise<void> {
    switch (frame.kind) {
      case PeerFrameKind.SnapshotBegin:
        this.#begin = {
          cluster_id: this.clusterId,
          from: this.selfId,
          message: frame.message,
          revision: frame.revision,
        };
        if (!this.#probed) {
          this.#probed = true;
          const probe = this.#call();
          probe.stream.end({ ...this.#begin, probe: true });
          this.#answers.push(probe.answer);
        }
        return;
      case PeerFrameKind.SnapshotData:
        await this.#send({
          first_record: frame.firstRecord,
          record_count: frame.count,
          crc32: frame.crc32,
          data: frame.records.slice(),
        });
        return;
      case PeerFrameKind.SnapshotEnd:
        await this.#send({ last: true, total_records: frame.totalRecords });
        this.#stream!.end();
        return;
      default:
        throw new Error(`frame kind ${frame.kind} does not travel in InstallSnapshot`);
    }
  }

  nextAck(): Promise<SnapshotAckFrame> {
    const next = this.#answers.shift();
    return next ?? Promise.reject(new Error("no acknowledgement is due"));
  }

  /**
   * Half-closes the stream, so the receiver keeps every record that arrived
   * (a later transfer resumes after them), and cancels it if it has not
   * finished a moment later.
   */
  close(): void {
    const stream = this.#stream;
    if (stream) {
      stream.end();
      const t = setTimeout(() => stream.cancel(), closeGraceMs);
      Deno.unrefTimer(t);
    }
    this.#client?.close();
  }

  /** Starts a call; its answer arrives as an ack frame. */
  #call(): { stream: grpc.ClientWritableStream<Wire>; answer: Promise<SnapshotAckFrame> } {
    let stream!: grpc.ClientWritableStream<Wire>;
    const answer = new Promise<SnapshotAckFrame>((resolve, reject) => {
      const client = this.#client as grpc.Client & Record<string, Wire>;
      stream = client.InstallSnapshot((err: grpc.ServiceError | null, ack: Wire) => {
        if (err) reject(new Error(`InstallSnapshot: ${err.details || err.message}`));
        else {
          resolve({
            kind: PeerFrameKind.SnapshotAck,
            ok: ack.ok,
            recordsHeld: Number(ack.records_held),
            reason: ack.reason,
          });
        }
      });
    });
    stream.on("error", () => {}); // reported through the callback
    answer.catch(() => {}); // a transfer given up on never reads its answer
    return { stream, answer };
  }

  /** Writes one chunk on the streaming call (opened with the begin chunk), honouring backpressure. */
  async #send(chunk: Wire): Promise<void> {
    if (!this.#stream) {
      const call = this.#call();
      this.#stream = call.stream;
      this.#answers.push(call.answer);
      call.stream.write(this.#begin);
    }
    const stream = this.#stream;
    if (!stream.write(chunk)) {
      await new Promise<void>((r) => {
        const done = () => {
          stream.off("drain", done);
          stream.off("close", done);
          stream.off("error", done);
          r();
        };
        stream.on("drain", done);
        stream.on("close", done);
        stream.on("error", done);
      });
    }
  }
}
