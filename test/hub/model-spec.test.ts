/** resolveModelSpec: how `model` / `--model` is found from any working directory (folder, built-in name, Hub id). */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { parseConfig } from "../../src/core/config.js";
import { modelDisplayName, resolveModelSpec } from "../../src/core/model-path.js";
import { DEFAULT_MODEL_DIR, PACKAGE_ROOT } from "../../src/core/paths.js";
import { ConfigError } from "../../src/errors/omni-error.js";
import { hubCacheDir, hubEndpoint, hubToken, parseRepoSpec } from "../../src/core/hub-cache.js";

const SHA_MAIN = "a".repeat(40);
const SHA_V1 = "b".repeat(40);

describe("resolveModelSpec", () => {
  const root = mkdtempSync(join(tmpdir(), "omni-spec-"));
  const cache = join(root, "hf", "hub");
  const storage = join(cache, "models--acme--sd-onnx");
  for (const sha of [SHA_MAIN, SHA_V1]) mkdirSync(join(storage, "snapshots", sha), { recursive: true });
  mkdirSync(join(storage, "refs"), { recursive: true });
  writeFileSync(join(storage, "refs", "main"), SHA_MAIN);
  writeFileSync(join(storage, "refs", "v1"), SHA_V1);
  mkdirSync(join(root, "work", "my-model"), { recursive: true });
  const cwd = join(root, "work");
  const env = { HF_HOME: join(root, "hf") };
  after(() => rmSync(root, { recursive: true, force: true }));

  it('"tiny-shapes" names the shipped model from a directory outside the package', () => {
    assert.equal(resolveModelSpec("tiny-shapes", { cwd, env }), DEFAULT_MODEL_DIR);
  });

  it("an existing folder wins, relative to the working directory", () => {
    assert.equal(resolveModelSpec("my-model", { cwd, env }), join(cwd, "my-model"));
    assert.equal(resolveModelSpec("models/tiny-shapes", { cwd: PACKAGE_ROOT, env }), DEFAULT_MODEL_DIR);
  });

  it("an explicit path is kept even when missing, so the loader names the missing file", () => {
    assert.equal(resolveModelSpec("/nonexistent/omni-model", { cwd, env }), "/nonexistent/omni-model");
    assert.equal(resolveModelSpec("./not-here", { cwd, env }), join(cwd, "not-here"));
  });

  it("a Hugging Face id finds the pulled snapshot through refs/, with @revision or a commit", () => {
    assert.equal(resolveModelSpec("acme/sd-onnx", { cwd, env }), join(storage, "snapshots", SHA_MAIN));
    assert.equal(resolveModelSpec("acme/sd-onnx@v1", { cwd, env }), join(storage, "snapshots", SHA_V1));
    assert.equal(resolveModelSpec(`acme/sd-onnx@${SHA_V1}`, { cwd, env }), join(storage, "snapshots", SHA_V1));
    assert.equal(resolveModelSpec("acme/sd-onnx", { cwd, env: { HF_HUB_CACHE: cache } }), join(storage, "snapshots", SHA_MAIN));
  });

  it("an id not in the cache is a ConfigError naming what was tried and the pull command", () => {
    assert.throws(
      () => resolveModelSpec("models/tiny-shapes", { cwd, env }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.data.field, "model");
        assert.match(err.message, new RegExp(`folder ${join(cwd, "models/tiny-shapes")}`));
        assert.match(err.message, /built-in models \(tiny-shapes\)/);
        assert.match(err.message, /models--models--tiny-shapes/);
        assert.match(err.message, /omni-diffusion pull models\/tiny-shapes$/);
        return true;
      },
    );
    assert.throws(() => resolveModelSpec("acme/sd-onnx@v2", { cwd, env }), /omni-diffusion pull acme\/sd-onnx --revision v2/);
  });

  it("a name that is nothing is a ConfigError too", () => {
    assert.throws(() => resolveModelSpec("tiny_shapes", { cwd, env }), (err: unknown) => err instanceof ConfigError && /not found; tried folder .*built-in models/.test(err.message));
    assert.throws(() => resolveModelSpec("", { cwd, env }), ConfigError);
  });

  it("parseConfig resolves `model` (default: the shipped model) and reports a bad one as the `model` field", () => {
    const prev = process.cwd();
    process.chdir(tmpdir());
    try {
      assert.equal(parseConfig({}).model, DEFAULT_MODEL_DIR);
      assert.equal(parseConfig({ model: "tiny-shapes" }).model, DEFAULT_MODEL_DIR);
      assert.throws(() => parseConfig({ model: "no-such-model" }), (err: unknown) => err instanceof ConfigError && err.data.field === "model" && /no-such-model/.test(err.message));
    } finally {
      process.chdir(prev);
    }
  });

  it("names a snapshot by its repository and a folder by its name", () => {
    assert.equal(modelDisplayName(join(storage, "snapshots", SHA_MAIN)), "acme/sd-onnx");
    assert.equal(modelDisplayName(DEFAULT_MODEL_DIR), "tiny-shapes");
  });
});

describe("Hub settings from the environment", () => {
  it("cache folder: HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub", () => {
    assert.equal(hubCacheDir({ HF_HUB_CACHE: "/x/cache", HF_HOME: "/y" }), "/x/cache");
    assert.equal(hubCacheDir({ HF_HOME: "/y" }), "/y/hub");
    assert.equal(hubCacheDir({ XDG_CACHE_HOME: "/z" }), "/z/huggingface/hub");
  });

  it("endpoint: HF_ENDPOINT without trailing slash, else huggingface.co", () => {
    assert.equal(hubEndpoint({ HF_ENDPOINT: "http://mirror.local:8080/" }), "http://mirror.local:8080");
    assert.equal(hubEndpoint({}), "https://huggingface.co");
  });

  it("token: HF_TOKEN, else the file huggingface-cli login writes", () => {
    const home = mkdtempSync(join(tmpdir(), "omni-token-"));
    try {
      assert.equal(hubToken({ HF_TOKEN: " hf_a ", HF_HOME: home }), "hf_a");
      assert.equal(hubToken({ HF_HOME: home }), undefined);
      writeFileSync(join(home, "token"), "hf_file\n");
      assert.equal(hubToken({ HF_HOME: home }), "hf_file");
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it("repo ids: owner/name[@revision]; paths and odd names are not ids", () => {
    assert.deepEqual(parseRepoSpec("onnxruntime/sd-turbo"), { repoId: "onnxruntime/sd-turbo", revision: "main" });
    assert.deepEqual(parseRepoSpec("runwayml/stable-diffusion-v1-5@onnx"), { repoId: "runwayml/stable-diffusion-v1-5", revision: "onnx" });
    for (const bad of ["tiny-shapes", "a/b/c", "../x", "a--b/c", "a/b@", "/abs/path"]) assert.equal(parseRepoSpec(bad), null, bad);
  });
});
