/** The RESP address a node reports to its peers: never a wildcard, IPv6 bracketed. */
import { assertEquals } from "../../lib/common/test_helpers.ts";
import { advertisedRespAddr } from "../../lib/resp/listener.ts";

Deno.test("advertisedRespAddr: the bound host, or the advertised gRPC host for a wildcard", () => {
  assertEquals(advertisedRespAddr("127.0.0.1", 6379, "10.0.0.5:7001"), "127.0.0.1:6379");
  assertEquals(advertisedRespAddr("0.0.0.0", 6379, "10.0.0.5:7001"), "10.0.0.5:6379");
  assertEquals(advertisedRespAddr("::", 6380, "[fd00::5]:7001"), "[fd00::5]:6380");
  assertEquals(advertisedRespAddr("::1", 6381, "127.0.0.1:7001"), "[::1]:6381");
  assertEquals(advertisedRespAddr("0.0.0.0", 6382, "db1.example:7001"), "db1.example:6382");
});
