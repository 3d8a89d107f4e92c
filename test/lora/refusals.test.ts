/**
 * LoRAs that cannot be fused are refused with a ValidationError (400, field `loras`) naming the file or keys,
 * before any session exists: keys for layers the model lacks, shapes of another architecture, files that are
 * not safetensors, truncated, with an oversized header or an unknown dtype, and network types we do not fuse.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ValidationError } from "../../src/errors/omni-error.js";
import { loadPipeline } from "../../src/pipelines/load.js";
import { SafetensorsFile } from "../../src/pipelines/lora/safetensors.js";
import { LORA_MODEL, lora } from "./fixtures.js";

const tmp = mkdtempSync(join(tmpdir(), "lora-refusals-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A safetensors file from a header object and a data section. */
function safetensors(name: string, header: unknown, data: Buffer = Buffer.alloc(0), headerLen?: number): string {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerLen ?? json.length));
  const path = join(tmp, `${name}.safetensors`);
  writeFileSync(path, Buffer.concat([len, json, data]));
  return path;
}

async function refused(path: string, pattern: RegExp): Promise<void> {
  await assert.rejects(
    loadPipeline(LORA_MODEL, { intraOpNumThreads: 1, loras: [{ name: "x", scale: 1, path }] }),
    (e: unknown) => e instanceof ValidationError && e.statusCode === 400 && e.field === "loras" && pattern.test(e.message),
  );
}

describe("LoRA refusals", () => {
  it("a LoRA whose keys match nothing in the model names some of them", async () => {
    await assert.rejects(
      loadPipeline(LORA_MODEL, { intraOpNumThreads: 1, loras: [lora("no-match", 1)] }),
      (e: unknown) =>
        e instanceof ValidationError && e.statusCode === 400 && /none of its 2 layers is in this model/.test(e.message) && /lora_unet_mid_block_attentions_0_proj_in/.test(e.message),
    );
  });

  it("a LoRA for another architecture (shape mismatch) is a 400 naming the layer and both shapes", async () => {
    await assert.rejects(
      loadPipeline(LORA_MODEL, { intraOpNumThreads: 1, loras: [lora("other-arch", 1)] }),
      (e: unknown) =>
        e instanceof ValidationError &&
        e.statusCode === 400 &&
        /lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q/.test(e.message) &&
        /LoRA down \[4, 48\], up \[48, 4\]; model weight \[16, 16\]/.test(e.message),
    );
  });

  it("a file that is not safetensors", async () => {
    const path = join(tmp, "text.safetensors");
    writeFileSync(path, "this is a text file, not a LoRA at all");
    await refused(path, /text\.safetensors is not a usable safetensors file/);
  });

  it("a truncated file (tensor data cut short)", async () => {
    const bytes = readFileSync(lora("style-peft", 1).path);
    const path = join(tmp, "cut.safetensors");
    writeFileSync(path, bytes.subarray(0, bytes.length - 100));
    await refused(path, /cut\.safetensors .*truncated/);
  });

  it("a header length past the end of the file, or above the cap", async () => {
    await refused(safetensors("long", {}, Buffer.alloc(0), 4096), /runs past the end/);
    await refused(safetensors("huge", {}, Buffer.alloc(0), 2 ** 40), /header of 1099511627776 bytes \(at most/);
  });

  it("an unknown dtype and offsets that disagree with the shape", async () => {
    const data = Buffer.alloc(64);
    await refused(safetensors("i8", { "unet.a.lora_A.weight": { dtype: "I8", shape: [4], data_offsets: [0, 4] } }, data), /dtype I8/);
    await refused(safetensors("short", { "unet.a.lora_A.weight": { dtype: "F32", shape: [4, 4], data_offsets: [0, 16] } }, data), /holds 16 bytes; shape \[4, 4\] in F32 needs 64/);
  });

  it("keys in neither format, and LoHa keys, are named", async () => {
    const data = Buffer.alloc(16);
    await refused(safetensors("foreign", { "model.diffusion_model.x.weight": { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, data), /neither the kohya .* format: model\.diffusion_model\.x\.weight/);
    await refused(safetensors("loha", { "lora_unet_a.hada_w1_a": { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, data), /unsupported LoRA network keys .*lora_unet_a\.hada_w1_a/);
  });

  it("reads F32, F16 and BF16 tensors as float32", () => {
    const data = Buffer.alloc(16);
    data.writeFloatLE(1.5, 0);
    data.writeUInt16LE(0x3e00, 4); // 1.5 in float16
    data.writeUInt16LE(0x3fc0, 6); // 1.5 in bfloat16
    const path = safetensors("dtypes", {
      f32: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
      f16: { dtype: "F16", shape: [1], data_offsets: [4, 6] },
      bf16: { dtype: "BF16", shape: [1], data_offsets: [6, 8] },
      __metadata__: { ss_network_dim: "4" },
    }, data);
    const f = SafetensorsFile.open(path);
    try {
      assert.deepEqual([f.read("f32")[0], f.read("f16")[0], f.read("bf16")[0]], [1.5, 1.5, 1.5]);
      assert.deepEqual(f.metadata, { ss_network_dim: "4" });
    } finally {
      f.close();
    }
  });
});
