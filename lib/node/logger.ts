/**
 * Structured logs: one line per event with time, level, node id and term,
 * then the event and its fields as key=value. Written to stderr so stdout
 * stays free for tools. Hot paths log at debug, which costs one comparison
 * when disabled.
 *
 * @module
 */

import type { LogLevel } from "../server/config.ts";

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Fields attached to a log event. */
export type LogFields = Record<string, string | number | boolean | undefined>;

/** Where log lines go (tests capture them). */
export type LogSink = (line: string) => void;

/** A leveled logger bound to one node. */
export class Logger {
  #threshold: number;
  /** Current Raft term, updated by the driver so every line carries it. */
  term = 0;

  constructor(
    readonly nodeId: string,
    level: LogLevel = "info",
    readonly sink: LogSink = (l) => console.error(l),
  ) {
    this.#threshold = rank[level];
  }

  /** True when `level` would be written (guards expensive field building). */
  enabled(level: LogLevel): boolean {
    return rank[level] >= this.#threshold;
  }

  #write(level: LogLevel, event: string, fields?: LogFields): void {
    if (rank[level] < this.#threshold) return;
    let line = `${new Date().toISOString()} ${
      level.toUpperCase().padEnd(5)
    } node=${this.nodeId} term=${this.term} ${event}`;
    if (fields) {
      for (const [k, v] of Object.entries(fields)) {
        if (v === undefined) continue;
        const s = String(v);
        line += ` ${k}=${/[\s"=]/.test(s) ? JSON.stringify(s) : s}`;
      }
    }
    this.sink(line);
  }

  /** Detail useful only when chasing a problem. */
  debug(event: string, fields?: LogFields): void {
    this.#write("debug", event, fields);
  }
  /** Elections, leader changes, snapshots, membership, start and stop. */
  info(event: string, fields?: LogFields): void {
    this.#write("info", event, fields);
  }
  /** Something is off but the node carries on. */
  warn(event: string, fields?: LogFields): void {
    this.#write("warn", event, fields);
  }
  /** The node could not do what it had to. */
  error(event: string, fields?: LogFields): void {
    this.#write("error", event, fields);
  }
}
