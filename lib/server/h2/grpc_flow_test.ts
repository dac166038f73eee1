// A client-streaming call whose handler falls behind holds its client back through HTTP/2 flow
// control, instead of the server buffering everything the client sends (a gRPC snapshot).
import net from "node:net";
import * as grpc from "@grpc/grpc-js";
import { assertEquals, assertTrue } from "../../common/test_helpers.ts";
import { H2ServerConnection } from "./connection.ts";
import { GrpcRouter } from "./grpc.ts";

Deno.test({
  name: "h2 server: a client stream is read only as fast as its handler takes messages",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const router = new GrpcRouter(8 << 20, (e) => ({ code: 2, details: String(e) }));
    let release = () => {};
    const handlerMayRead = new Promise<void>((r) => (release = r));
    let taken = 0;
    router.add("/t.T/Up", { decode: (b) => b, encode: (m) => m as Uint8Array }, {
      kind: "clientStream",
      handle: async (requests) => {
        await handlerMayRead; // a staging that has fallen behind
        for await (const _ of requests) taken++;
        return new Uint8Array(0);
      },
    });
    const sockets: net.Socket[] = [];
    const server = net.createServer((s) => {
      sockets.push(s);
      s.on("error", () => {});
      new H2ServerConnection(s, (stream) => router.serve(stream));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const client = new grpc.Client(
      `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
      grpc.credentials.createInsecure(),
    );
    try {
      const done = new Promise<void>((resolve, reject) => {
        const call = client.makeClientStreamRequest(
          "/t.T/Up",
          (b: Uint8Array) => Buffer.from(b),
          (b: Buffer) => b,
          (err: unknown) => (err ? reject(err) : resolve()),
        );
        (async () => {
          const chunk = new Uint8Array(1 << 20);
          for (let i = 0; i < 40; i++) {
            if (!call.write(chunk)) await new Promise((r) => call.once("drain", r));
          }
          call.end();
        })();
      });
      await new Promise((r) => setTimeout(r, 1_500));
      const read = sockets.reduce((n, s) => n + s.bytesRead, 0);
      assertTrue(read < 8 << 20, `the server read ${read} bytes before its handler took any`);
      release();
      await done;
      assertEquals(taken, 40);
    } finally {
      release();
      client.close();
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    }
  },
});
