/**
 * `host:port` addresses as flags, membership and NodeStatus carry them,
 * with IPv6 hosts in brackets (`[::1]:7001`).
 *
 * @module
 */

/** Host (brackets removed) and port of `host:port` or `[v6]:port`. */
export function splitHostPort(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(":");
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(addr.slice(i + 1)) };
}

/** `host:port`, the host bracketed when it is an IPv6 address. */
export function joinHostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/**
 * An address as the member table keeps it: `localhost` spelled 127.0.0.1, as
 * a node advertises it, so one address has one spelling (a member added as
 * localhost:P could never start, and a clash spelled differently went unseen).
 */
export function canonicalMemberAddr(addr: string): string {
  return addr.replace(/^localhost:/i, "127.0.0.1:");
}

/** A listen-anywhere address (0.0.0.0 or [::]): no peer can reach a node there. */
export function isWildcardAddr(addr: string): boolean {
  return /^(0\.0\.0\.0|\[::\]):/.test(addr);
}
