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
