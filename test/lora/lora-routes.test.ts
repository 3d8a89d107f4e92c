/**
 * The LoRA listings of `serve --loras-dir` (`/v1/loras`, A1111's `/sdapi/v1/loras` and `refresh-loras`), and
 * A1111 prompt tags turned into the requests' `loras` with the tags gone from the encoded text.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startServer, type OmniServer } from "../../src/index.js";
import { planA1111 } from "../../src/server/a1111/a1111-request.js";
import { parseServerConfig } from "../../src/server/app/server-options.js";
import { lora } from "./fixtures.js";

describe("LoRA routes", () => {
  const dir = mkdtempSync(join(tmpdir(), "lora-routes-"));
  let server: OmniServer;
  before(async () => {
    copyFileSync(lora("style-kohya", 1).path, join(dir, "ink.safetensors"));
    server = await startServer({ port: 0, lorasDir: dir, engineConfig: { numGpus: 1, intraOpNumThreads: 1 }, logger: false });
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("/v1/loras lists the folder, rescanned on each call", async () => {
    const first = (await (await fetch(`${server.url}/v1/loras`)).json()) as { object: string; data: { id: string; object: string; bytes: number }[] };
    assert.equal(first.object, "list");
    assert.deepEqual(first.data.map((d) => [d.id, d.object]), [["ink", "lora"]]);
    assert.ok(first.data[0]!.bytes > 0);
    copyFileSync(lora("style-peft", 1).path, join(dir, "paper.safetensors"));
    const second = (await (await fetch(`${server.url}/v1/loras`)).json()) as { data: { id: string }[] };
    assert.deepEqual(second.data.map((d) => d.id), ["ink", "paper"]);
  });

  it("/sdapi/v1/loras answers in A1111's shape: name, alias, path, metadata", async () => {
    assert.equal((await fetch(`${server.url}/sdapi/v1/refresh-loras`, { method: "POST" })).status, 200);
    const list = (await (await fetch(`${server.url}/sdapi/v1/loras`)).json()) as { name: string; alias: string; path: string; metadata: Record<string, string> }[];
    const ink = list.find((l) => l.name === "ink")!;
    assert.deepEqual(ink, { name: "ink", alias: "ink", path: join(dir, "ink.safetensors"), metadata: { ss_network_dim: "4", ss_network_alpha: "2" } });
  });

  it("A1111 <lora:…> tags leave the prompt and become each request's loras", async () => {
    const limits = parseServerConfig({}).limits;
    const plan = await planA1111("txt2img", { prompt: "a red circle <lora:ink:0.6> on a blue background", n_iter: 2 }, limits, server.model);
    for (const r of plan.requests) {
      assert.equal(r.prompt, "a red circle on a blue background");
      assert.deepEqual((r as { loras?: unknown }).loras, [{ name: "ink", scale: 0.6 }]);
    }
    const plain = await planA1111("txt2img", { prompt: "a red circle" }, limits, server.model);
    assert.equal("loras" in plain.requests[0]!, false);
  });
});
