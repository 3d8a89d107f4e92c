/**
 * Issue 21 item 7: one rule for keys on every transport. A key with surrounding whitespace worked over HTTP
 * (HTTP/1.1 strips it from the header) but not over gRPC (HTTP/2 drops such a value, so the server saw no key),
 * and a server configured with one refused every client. Surrounding whitespace is now never part of a key.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { OmniServer } from "../../src/index.js";
import { callMetadata, createClient } from "../../src/protocol/grpc-codec.js";
import type { WorkerServer } from "../../src/server/worker/worker-server.js";
import { GatedExecutor } from "../fixtures/server/gated-executor.js";
import { startTestWorker } from "../helpers/worker-servers.js";

function grpcPing(address: string, key: string): Promise<string> {
  const client = createClient(address) as grpc.Client & { CollectiveRpc: (m: unknown, md: grpc.Metadata, cb: (e: grpc.ServiceError | null) => void) => void };
  return new Promise<string>((resolve) =>
    client.CollectiveRpc({ method: "ping", args_json: "[]", kwargs_json: "{}" }, callMetadata(key), (e) => {
      client.close();
      resolve(e ? grpc.status[e.code]! : "OK");
    }),
  );
}

async function httpPing(url: string, key: string): Promise<number> {
  const res = await fetch(`${url}/v1/diffusion/rpc`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${key}` }, body: JSON.stringify({ method: "ping", args: [] }) });
  await res.arrayBuffer();
  return res.status;
}

describe("API keys: surrounding whitespace is not part of a key, over HTTP and gRPC alike", () => {
  const workers: WorkerServer[] = [];
  after(() => Promise.all(workers.map((w) => w.close())));

  for (const [serverKey, clientKey] of [["k", "k "], ["k ", "k"], ["k\n", " k\t"]] as const) {
    test(`worker key ${JSON.stringify(serverKey)}, client key ${JSON.stringify(clientKey)}: accepted on both transports`, async () => {
      const w = await startTestWorker({ httpPort: 0, grpcPort: 0, apiKey: serverKey });
      workers.push(w);
      assert.deepEqual([await httpPing(w.httpUrl!, clientKey), await grpcPing(w.grpcAddress!, clientKey)], [200, "OK"]);
      assert.deepEqual([await httpPing(w.httpUrl!, "other"), await grpcPing(w.grpcAddress!, "other")], [401, "UNAUTHENTICATED"], "a wrong key still fails");
    });
  }

  test("serve: a configured key with a trailing newline (a key file) takes the key; a blank key is a ConfigError", async () => {
    const server = await OmniServer.create({ apiKey: "k\n", logger: false, defaultMetrics: false, engineConfig: { executorClass: GatedExecutor } });
    try {
      assert.equal((await server.app.inject({ method: "GET", url: "/v1/models", headers: { authorization: "Bearer k" } })).statusCode, 200);
    } finally {
      await server.close();
    }
    await assert.rejects(OmniServer.create({ apiKey: "  ", logger: false, engineConfig: { executorClass: GatedExecutor } }), /apiKey: must not be blank/);
  });
});
