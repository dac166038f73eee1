import { assertEquals, assertTrue } from "../../lib/common/test_helpers.ts";
import { ConflictError, isKVError, NotLeaderError, TimeoutError } from "../../lib/common/errors.ts";
import type { KVNode } from "../../lib/node/kv_node.ts";
import { RespStore } from "../../lib/resp/store.ts";
import { utf8 } from "../../lib/common/bytes.ts";

/** What a put through `store` ends with (its error), closing the store after. */
async function putError(store: RespStore): Promise<unknown> {
  try {
    await store.put(utf8("kp"), utf8("1"), 0);
    return undefined;
  } catch (e) {
    return e;
  } finally {
    store.close();
  }
}

/**
 * A follower's view for RespStore: time that moves only when the store waits
 * or an attempt runs, and a relay whose answers the test scripts.
 */
function followerWith(answers: Array<() => Error>) {
  let now = 0;
  const attempts: number[] = [];
  const node = {
    config: { nodeId: "n2", tickMs: 10 },
    clock: {
      nowMs: () => now,
      wallMs: () => 1_000_000 + now,
      sleep: (ms: number) => {
        now += ms;
        return Promise.resolve();
      },
    },
    replica: {
      isLeader: false,
      proposeAnywhere: (_data: Uint8Array, _id: string, deadlineMs: number) => {
        attempts.push(now);
        const answer = answers[Math.min(attempts.length, answers.length) - 1];
        now = Math.max(now, Math.min(deadlineMs, now + 1_000));
        return Promise.reject(answer());
      },
    },
  };
  return { store: new RespStore(node as unknown as KVNode), attempts };
}

Deno.test("resp store: a write whose first relay timed out never reports 'not applied' at the end", async () => {
  // The first relay times out (it may still commit); then the follower loses its leader.
  const { store, attempts } = followerWith([
    () => new TimeoutError("the relayed write was not answered in time"),
    () => new NotLeaderError(undefined, undefined),
  ]);
  const error = await putError(store);
  assertTrue(attempts.length > 1, `retried: ${attempts.length} attempts`);
  assertTrue(isKVError(error, "Timeout"), String(error));
  assertTrue((error as Error).message.includes("outcome is unknown"), (error as Error).message);
});

Deno.test("resp store: a write no attempt of which left the node reports why, as before", async () => {
  const { store } = followerWith([() => new NotLeaderError(undefined, undefined)]);
  assertEquals(((await putError(store)) as Error).name, "NotLeaderError");
});

Deno.test("resp store: a Conflict after a timed-out attempt is the write's answer, not 'outcome unknown'", async () => {
  // Every copy of a write with one id gets the one recorded outcome: a Conflict is final.
  const { store } = followerWith([
    () => new TimeoutError("the relayed write was not answered in time"),
    () => new ConflictError(utf8("kp"), 7),
  ]);
  assertEquals(((await putError(store)) as Error).name, "ConflictError");
});
