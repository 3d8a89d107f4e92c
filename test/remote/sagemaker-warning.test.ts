/**
 * The AWS SDK prints a Node-version support notice on every run of the sagemaker executor unless its own
 * switch (`AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED`) is set; the executor sets it when unset. Runs
 * the executor in a child process (the SDK prints once per process) against a port nothing listens on.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const EXECUTOR = new URL("../../src/executors/sagemaker-executor.ts", import.meta.url).href;
const CONFIG = new URL("../../src/core/config.ts", import.meta.url).href;
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

async function runOnce(env: Record<string, string | undefined>): Promise<string> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  const code = `
    const { SageMakerDiffusionExecutor } = await import(${JSON.stringify(EXECUTOR)});
    const { parseConfig } = await import(${JSON.stringify(CONFIG)});
    const ex = new SageMakerDiffusionExecutor(parseConfig({ executorOptions: { endpointName: "e", endpointUrl: "http://127.0.0.1:${port}", refusedTimeoutMs: 0 } }));
    await ex.init().catch((e) => console.log("init failed:", e.code));
    await ex.close();`;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], {
    cwd: ROOT,
    env: { ...process.env, AWS_ACCESS_KEY_ID: "AKIDOMNITEST", AWS_SECRET_ACCESS_KEY: "x", AWS_REGION: "us-east-1", AWS_EC2_METADATA_DISABLED: "true", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const [status] = await once(child, "exit");
  assert.equal(status, 0, out);
  assert.match(out, /init failed: OMNI_ERR_TRANSPORT/, "the executor did build its SDK client and call");
  return out;
}

describe("the sagemaker executor and the AWS SDK's Node-version notice", { timeout: 120_000 }, () => {
  it("is silent by default, and the notice still shows for a user who asks for it", { timeout: 120_000 }, async () => {
    const quiet = await runOnce({ AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: undefined });
    assert.doesNotMatch(quiet, /NodeVersionSupportWarning/);
    if (Number(process.versions.node.split(".")[0]) < 22) {
      const loud = await runOnce({ AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "false" });
      assert.match(loud, /NodeVersionSupportWarning/, "the SDK notice exists on this Node, so the silent run proves the switch works");
    }
  });
});
