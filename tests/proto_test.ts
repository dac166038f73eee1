import { assertTrue } from "../lib/common/test_helpers.ts";
import { loadRustkvdPackage } from "../lib/server/proto.ts";

Deno.test("the proto loads and defines the seed's services and RPCs", () => {
  const pkg = loadRustkvdPackage();
  // deno-lint-ignore no-explicit-any
  const service = (name: string) => (pkg[name] as any).service as Record<string, unknown>;
  for (const rpc of ["Get", "Put", "Delete", "Watch", "Scan", "NodeStatus", "Txn"]) {
    assertTrue(rpc in service("KVStore"), rpc);
  }
  for (const rpc of ["AppendEntries", "RequestVote", "InstallSnapshot"]) {
    assertTrue(rpc in service("RaftInternal"), rpc);
  }
  for (const rpc of ["MemberList", "MemberAdd", "MemberRemove", "TransferLeader", "Join"]) {
    assertTrue(rpc in service("Admin"), rpc);
  }
});
