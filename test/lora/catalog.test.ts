/** The LoRA folder catalog (`--loras-dir`) and A1111's `<lora:name:weight>` prompt tags. */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ConfigError, NotFoundError, ValidationError } from "../../src/errors/omni-error.js";
import { LoraCatalog, loraResolver } from "../../src/pipelines/lora/lora-catalog.js";
import { extractLoraTags } from "../../src/pipelines/lora/prompt-lora-tags.js";
import { LORA_FIXTURES, lora } from "./fixtures.js";

const tmp = mkdtempSync(join(tmpdir(), "lora-catalog-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe("LoRA catalog", () => {
  it("names each *.safetensors by its file name, subfolders included, and resolves names to files", () => {
    const dir = join(tmp, "a");
    mkdirSync(join(dir, "styles"), { recursive: true });
    copyFileSync(lora("style-kohya", 1).path, join(dir, "styles", "ink.safetensors"));
    copyFileSync(lora("style-peft", 1).path, join(dir, "paper.safetensors"));
    copyFileSync(join(LORA_FIXTURES, "expected.json"), join(dir, "notes.json"));
    const c = new LoraCatalog(dir);
    assert.deepEqual(c.list().map((e) => e.name).sort(), ["ink", "paper"]);
    assert.equal(c.resolve("ink"), join(dir, "styles", "ink.safetensors"));
    assert.deepEqual(c.metadata("ink"), { ss_network_dim: "4", ss_network_alpha: "2" });
    assert.deepEqual(c.specs([{ name: "paper", scale: 0.5 }]), [{ name: "paper", scale: 0.5, path: join(dir, "paper.safetensors") }]);
  });

  it("an unknown name rescans once (a file added later is found), then is a NotFoundError naming it", () => {
    const dir = join(tmp, "b");
    mkdirSync(dir);
    const resolveLora = loraResolver(dir);
    assert.throws(() => resolveLora("late"), (e: unknown) => e instanceof NotFoundError && e.statusCode === 404 && /unknown LoRA "late"/.test(e.message));
    copyFileSync(lora("locon", 1).path, join(dir, "late.safetensors"));
    assert.equal(resolveLora("late"), join(dir, "late.safetensors"));
  });

  it("a missing folder is a ConfigError naming lorasDir", () => {
    assert.throws(() => new LoraCatalog(join(tmp, "nope")), (e: unknown) => e instanceof ConfigError && /does not exist/.test(e.message));
  });
});

describe("A1111 <lora:…> tags", () => {
  it("are removed from the prompt and become LoRAs with their weights (default 1; repeats add)", () => {
    assert.deepEqual(extractLoraTags("a photo of a cat <lora:ink:0.8>, <lora:paper> detailed"), {
      prompt: "a photo of a cat , detailed",
      loras: [{ name: "ink", scale: 0.8 }, { name: "paper", scale: 1 }],
    });
    assert.deepEqual(extractLoraTags("<lora:ink:0.5><lora:ink:0.25:1> cat").loras, [{ name: "ink", scale: 0.75 }]);
    assert.deepEqual(extractLoraTags("no tags here, a < b"), { prompt: "no tags here, a < b", loras: [] });
  });

  it("a weight that is not a number is a 400 naming the field", () => {
    assert.throws(() => extractLoraTags("x <lora:ink:lots>"), (e: unknown) => e instanceof ValidationError && e.field === "prompt" && /<lora:ink:lots>/.test(e.message));
  });
});
