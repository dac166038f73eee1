import { assertEquals } from "./test_helpers.ts";
import { joinHostPort, splitHostPort } from "./host_port.ts";

Deno.test("host:port: split and joined, IPv6 in brackets", () => {
  assertEquals(splitHostPort("127.0.0.1:7001"), { host: "127.0.0.1", port: 7001 });
  assertEquals(splitHostPort("[::1]:6379"), { host: "::1", port: 6379 });
  assertEquals(splitHostPort("db1.example:0"), { host: "db1.example", port: 0 });
  assertEquals(joinHostPort("::1", 6379), "[::1]:6379");
  assertEquals(joinHostPort("10.0.0.5", 7001), "10.0.0.5:7001");
  for (const a of ["127.0.0.1:7001", "[fd00::5]:80", "h:1"]) {
    const { host, port } = splitHostPort(a);
    assertEquals(joinHostPort(host, port), a);
  }
});
