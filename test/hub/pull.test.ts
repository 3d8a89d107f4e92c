/**
 * `pullModel` against a local stand-in for the Hugging Face Hub (test/hub/fake-hub.ts): the real Hub cannot be
 * reached from the test machines, so a server on 127.0.0.1:0 serves a copy of models/tiny-shapes in the Hub's
 * API shapes (listing, resolve URLs, LFS redirects to a second "CDN" origin, etags, error codes).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { DEFAULT_MODEL_DIR } from "../../src/core/paths.js";
import { resolveModelSpec } from "../../src/core/model-path.js";
import { ConfigError, HubAuthError, HubNotFoundError, IntegrityError, ModelLayoutError, TransportError } from "../../src/errors/omni-error.js";
import { findCachedSnapshot } from "../../src/core/hub-cache.js";
import { pullModel, type PullOptions } from "../../src/hub/pull-model.js";
import { startServer, type OmniServer } from "../../src/server/omni-server.js";
import { FakeHub } from "./fake-hub.js";

const REPO = "fixtures/tiny-shapes-onnx";
const GATED = "fixtures/gated-onnx";
const TORCH = "fixtures/torch-only";
const NO_INDEX = "fixtures/not-diffusers";
const TOKEN = "hf_test_token";
const EXTRA = {
  "README.md": "# tiny-shapes\n",
  "unet/diffusion_pytorch_model.safetensors": Buffer.alloc(8192, 7),
  "safety_checker/model.onnx": Buffer.alloc(5000, 1),
  "safety_checker/config.json": "{}",
};
const NEEDED = [
  "model_index.json",
  "scheduler/scheduler_config.json",
  "text_encoder/config.json",
  "text_encoder/model.onnx",
  "tokenizer/tokenizer.json",
  "tokenizer/tokenizer_config.json",
  "unet/config.json",
  "unet/model.onnx",
  "vae_decoder/config.json",
  "vae_decoder/model.onnx",
];

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("pull from a stand-in Hub", { timeout: 120_000 }, () => {
  let hub: FakeHub;
  let commit: string;
  const dirs: string[] = [];
  const freshCache = () => {
    const d = mkdtempSync(join(tmpdir(), "omni-hub-"));
    dirs.push(d);
    return d;
  };
  const opts = (cacheDir: string, extra: PullOptions = {}): PullOptions => ({ cacheDir, env: { HF_ENDPOINT: hub.url }, ...extra });

  before(async () => {
    hub = await FakeHub.start();
    commit = hub.addRepo(REPO, { dir: DEFAULT_MODEL_DIR, omit: ["MODEL_CARD.md"], extra: EXTRA });
    hub.addRepo(GATED, { dir: DEFAULT_MODEL_DIR, omit: ["MODEL_CARD.md"], token: TOKEN });
    hub.addRepo(TORCH, { extra: { "model_index.json": "{}", "unet/diffusion_pytorch_model.safetensors": Buffer.alloc(100) } });
    hub.addRepo(NO_INDEX, { extra: { "config.json": "{}", "model.onnx": Buffer.alloc(100) } });
  });
  after(async () => {
    await hub.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("fills the Hub cache in huggingface_hub's layout with only the files the ONNX pipeline needs", async () => {
    const cache = freshCache();
    const progress: number[] = [];
    const r = await pullModel(REPO, opts(cache, { onProgress: (p) => progress.push(p.doneBytes) }));
    const storage = join(cache, "models--fixtures--tiny-shapes-onnx");
    assert.equal(r.commit, commit);
    assert.equal(r.snapshotDir, join(storage, "snapshots", commit));
    assert.deepEqual([...r.files].sort(), NEEDED);
    assert.equal(readFileSync(join(storage, "refs", "main"), "utf8"), commit);
    // LFS files are stored under their sha256, small files under their git blob sha1, linked relatively.
    const unet = readFileSync(join(DEFAULT_MODEL_DIR, "unet", "model.onnx"));
    const pointer = join(r.snapshotDir, "unet", "model.onnx");
    assert.ok(lstatSync(pointer).isSymbolicLink());
    assert.equal(readlinkSync(pointer), `../../../blobs/${sha256(unet)}`);
    assert.equal(sha256(readFileSync(pointer)), sha256(unet));
    const index = readFileSync(join(DEFAULT_MODEL_DIR, "model_index.json"));
    const gitSha = createHash("sha1").update(`blob ${index.length}\0`).update(index).digest("hex");
    assert.equal(readlinkSync(join(r.snapshotDir, "model_index.json")), `../../blobs/${gitSha}`);
    // Skipped: README, PyTorch weights, the safety checker.
    assert.ok(!existsSync(join(r.snapshotDir, "README.md")));
    assert.ok(!existsSync(join(r.snapshotDir, "unet", "diffusion_pytorch_model.safetensors")));
    assert.ok(!existsSync(join(r.snapshotDir, "safety_checker")));
    assert.equal(readdirSync(join(storage, "blobs")).filter((b) => b.endsWith(".incomplete")).length, 0);
    assert.equal(progress.at(-1), r.downloadedBytes);
    // The model is now found by its id, from the same cache.
    assert.equal(resolveModelSpec(REPO, { env: { HF_HUB_CACHE: cache } }), r.snapshotDir);
    assert.equal(findCachedSnapshot(REPO, commit, cache), r.snapshotDir);
  });

  it("a second pull downloads nothing", async () => {
    const cache = freshCache();
    await pullModel(REPO, opts(cache));
    const seen = hub.requests.length;
    const r = await pullModel(REPO, opts(cache));
    assert.equal(r.downloadedBytes, 0);
    assert.deepEqual(
      hub.requests.slice(seen).map((q) => q.path.split("?")[0]),
      [`/api/models/${REPO}/revision/main`],
    );
  });

  it("a gated repository without HF_TOKEN fails saying to set it; with it, the token never reaches the CDN", async () => {
    const cache = freshCache();
    await assert.rejects(pullModel(GATED, opts(cache)), (err: unknown) => {
      assert.ok(err instanceof HubAuthError, String(err));
      assert.equal(err.code, "OMNI_ERR_HUB_AUTH");
      assert.match(err.message, /401/);
      assert.match(err.message, /set HF_TOKEN/);
      assert.match(err.message, /licence/);
      return true;
    });
    await assert.rejects(pullModel(GATED, opts(cache, { env: { HF_ENDPOINT: hub.url, HF_TOKEN: "hf_wrong" } })), (err: unknown) => {
      assert.ok(err instanceof HubAuthError);
      assert.match(err.message, /403.*token in HF_TOKEN was refused/);
      return true;
    });
    const seen = hub.requests.length;
    const r = await pullModel(GATED, opts(cache, { env: { HF_ENDPOINT: hub.url, HF_TOKEN: TOKEN } }));
    assert.equal(r.files.length, NEEDED.length);
    const mine = hub.requests.slice(seen);
    assert.ok(mine.some((q) => q.server === "cdn"), "LFS files come from the CDN origin");
    assert.ok(mine.filter((q) => q.server === "hub").every((q) => q.authorization === `Bearer ${TOKEN}`));
    assert.ok(mine.filter((q) => q.server === "cdn").every((q) => q.authorization === undefined), "the token is not sent to another origin");
  });

  it("a missing repository or revision is a HubNotFoundError naming it", async () => {
    await assert.rejects(pullModel("fixtures/no-such-repo", opts(freshCache())), (err: unknown) => {
      assert.ok(err instanceof HubNotFoundError);
      assert.equal(err.code, "OMNI_ERR_HUB_NOT_FOUND");
      assert.match(err.message, /repository fixtures\/no-such-repo/);
      return true;
    });
    await assert.rejects(pullModel(REPO, opts(freshCache(), { revision: "v9" })), /revision "v9"/);
  });

  it("a repository that is not a diffusers ONNX export is refused before any download", async () => {
    const seen = hub.requests.length;
    await assert.rejects(pullModel(TORCH, opts(freshCache())), (err: unknown) => {
      assert.ok(err instanceof ModelLayoutError);
      assert.match(err.message, /not an ONNX export.*unet\/diffusion_pytorch_model\.safetensors/);
      return true;
    });
    await assert.rejects(pullModel(NO_INDEX, opts(freshCache())), (err: unknown) => err instanceof ModelLayoutError && /no model_index\.json/.test(err.message));
    assert.ok(hub.requests.slice(seen).every((q) => q.path.startsWith("/api/")));
  });

  it("a download cut off mid-file is kept as .incomplete and the next pull resumes it with a Range request", async () => {
    const cache = freshCache();
    const unet = readFileSync(join(DEFAULT_MODEL_DIR, "unet", "model.onnx"));
    const partial = join(cache, "models--fixtures--tiny-shapes-onnx", "blobs", `${sha256(unet)}.incomplete`);
    hub.dropOnce.set("unet/model.onnx", 3_000_000);
    await assert.rejects(pullModel(REPO, opts(cache, { maxResumes: 0 })), (err: unknown) => {
      assert.ok(err instanceof TransportError, String(err));
      assert.match(err.message, /unet\/model\.onnx broke off after \d+ of \d+ bytes.*pull again to resume/);
      return true;
    });
    const have = lstatSync(partial).size;
    assert.ok(have > 0 && have < unet.length, `partial file of ${have} bytes`);
    const seen = hub.requests.length;
    const r = await pullModel(REPO, opts(cache, { maxResumes: 0 }));
    const ranged = hub.requests.slice(seen).filter((q) => q.server === "cdn" && q.range);
    assert.deepEqual(ranged.map((q) => q.range), [`bytes=${have}-`]);
    assert.equal(sha256(readFileSync(join(r.snapshotDir, "unet", "model.onnx"))), sha256(unet));
    assert.ok(!existsSync(partial));
    // Only the rest of the cut file and the files after it were fetched again.
    const after = ["vae_decoder/config.json", "vae_decoder/model.onnx"].reduce((n, f) => n + readFileSync(join(DEFAULT_MODEL_DIR, f)).length, 0);
    assert.equal(r.downloadedBytes, unet.length - have + after);
  });

  it("a connection dropped mid-file is resumed within the same pull", async () => {
    const cache = freshCache();
    hub.dropOnce.set("unet/model.onnx", 1_000_000);
    const seen = hub.requests.length;
    const r = await pullModel(REPO, opts(cache));
    assert.equal(hub.requests.slice(seen).filter((q) => q.server === "cdn" && q.range).length, 1);
    assert.equal(sha256(readFileSync(join(r.snapshotDir, "unet", "model.onnx"))), sha256(readFileSync(join(DEFAULT_MODEL_DIR, "unet", "model.onnx"))));
  });

  it("a server that ignores Range restarts the file instead of splicing bytes", async () => {
    const cache = freshCache();
    hub.dropOnce.set("text_encoder/model.onnx", 500_000);
    await assert.rejects(pullModel(REPO, opts(cache, { maxResumes: 0 })), TransportError);
    hub.ignoreRanges = true;
    try {
      const r = await pullModel(REPO, opts(cache));
      const want = readFileSync(join(DEFAULT_MODEL_DIR, "text_encoder", "model.onnx"));
      assert.equal(sha256(readFileSync(join(r.snapshotDir, "text_encoder", "model.onnx"))), sha256(want));
    } finally {
      hub.ignoreRanges = false;
    }
  });

  it("a corrupted file fails the sha256 check and is not kept", async () => {
    const cache = freshCache();
    hub.corrupt.add("unet/model.onnx");
    try {
      await assert.rejects(pullModel(REPO, opts(cache)), (err: unknown) => {
        assert.ok(err instanceof IntegrityError, String(err));
        assert.equal(err.code, "OMNI_ERR_INTEGRITY");
        assert.match(err.message, /unet\/model\.onnx.*sha256 [0-9a-f]{64}, expected [0-9a-f]{64}.*deleted/);
        return true;
      });
    } finally {
      hub.corrupt.delete("unet/model.onnx");
    }
    const blobs = readdirSync(join(cache, "models--fixtures--tiny-shapes-onnx", "blobs"));
    const unetSha = sha256(readFileSync(join(DEFAULT_MODEL_DIR, "unet", "model.onnx")));
    assert.ok(!blobs.some((b) => b.startsWith(unetSha)), `no blob or partial of the bad file: ${blobs.join(", ")}`);
    // The failed pull wrote no ref, so the half-filled snapshot is not taken for the model.
    assert.throws(() => resolveModelSpec(REPO, { env: { HF_HUB_CACHE: cache } }), ConfigError);
    // A clean pull afterwards succeeds.
    const r = await pullModel(REPO, opts(cache));
    assert.equal(sha256(readFileSync(join(r.snapshotDir, "unet", "model.onnx"))), unetSha);
  });

  it("serve finds a pulled model by its id (HF_HUB_CACHE) and names it so in /v1/models", async () => {
    const cache = freshCache();
    await pullModel(REPO, opts(cache));
    const prev = process.env.HF_HUB_CACHE;
    process.env.HF_HUB_CACHE = cache;
    let server: OmniServer | undefined;
    try {
      server = await startServer({ port: 0, engineConfig: { model: REPO, numGpus: 1, intraOpNumThreads: 1 }, logger: false });
      const models = (await (await fetch(`${server.url}/v1/models`)).json()) as { data: { id: string }[] };
      assert.deepEqual(models.data.map((m) => m.id), [REPO]);
    } finally {
      if (prev === undefined) delete process.env.HF_HUB_CACHE;
      else process.env.HF_HUB_CACHE = prev;
      await server?.close();
    }
  });

  it("refuses bad ids, revisions and HF_ENDPOINT values before any request", async () => {
    const seen = hub.requests.length;
    await assert.rejects(pullModel("../etc", opts(freshCache())), /not a Hugging Face model id/);
    await assert.rejects(pullModel(REPO, opts(freshCache(), { revision: "../../x" })), /not a revision/);
    await assert.rejects(pullModel(REPO, { cacheDir: freshCache(), env: { HF_ENDPOINT: "ftp://mirror" } }), (err: unknown) => err instanceof ConfigError && /HF_ENDPOINT/.test(err.message));
    assert.equal(hub.requests.length, seen);
  });
});
