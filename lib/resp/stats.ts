/**
 * Counters of one RESP listener, for the Clients and Stats sections of INFO
 * (the names Redis monitoring tools read). Connections bump them once per
 * read, batch and write, never per byte or per reply.
 *
 * @module
 */

/** Samples kept for instantaneous_ops_per_sec (Redis keeps 16, taken every 100 ms). */
const opsSamples = 16;

/** How often the listener samples the command counter. */
export const opsSampleIntervalMs = 100;

/** A listener's counters; see the module doc. */
export class RespStats {
  /** Connections accepted (total_connections_received). */
  connectionsReceived = 0;
  /** Connections open now (connected_clients). */
  connectedClients = 0;
  /** Connections refused at the client limit (rejected_connections). */
  rejectedConnections = 0;
  /** Commands run, including those answered with an error (total_commands_processed). */
  commandsProcessed = 0;
  /** Replies that were errors (total_error_replies), counted when written out. */
  errorReplies = 0;
  /** Bytes read from clients (total_net_input_bytes). */
  netInputBytes = 0;
  /** Bytes written to clients (total_net_output_bytes). */
  netOutputBytes = 0;
  /** Ring of [ms, commandsProcessed] samples. */
  readonly #samples: Array<[number, number]> = [];
  #next = 0;

  /** Records the command counter at `nowMs` (monotonic); called every opsSampleIntervalMs. */
  sample(nowMs: number): void {
    const s: [number, number] = [nowMs, this.commandsProcessed];
    if (this.#samples.length < opsSamples) this.#samples.push(s);
    else this.#samples[this.#next] = s;
    this.#next = (this.#next + 1) % opsSamples;
  }

  /** Commands per second over the sampled window (about 1.6 s); 0 before two samples. */
  instantaneousOpsPerSec(): number {
    const n = this.#samples.length;
    if (n < 2) return 0;
    const newest = this.#samples[(this.#next + n - 1) % n];
    const oldest = this.#samples[n < opsSamples ? 0 : this.#next];
    const ms = newest[0] - oldest[0];
    return ms <= 0 ? 0 : Math.round((newest[1] - oldest[1]) * 1000 / ms);
  }
}
