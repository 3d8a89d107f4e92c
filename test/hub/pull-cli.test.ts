/**
 * The CLI end to end, run from a directory outside the package: `pull` from a local stand-in for the Hugging
 * Face Hub (test/hub/fake-hub.ts; the real Hub cannot be reached from here), then `--model <repo-id>` and
 * `--model tiny-shapes` finding their folders.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { DEFAULT_MODEL_DIR, PACKAGE_ROOT } from "../../src/core/paths.js";
import { FakeHub } from "./fake-hub.js";
import { editedListing, stallListing } from "./hostile-faults.js";

const MAIN = join(PACKAGE_ROOT, "src", "cli", "main.ts");
// `--import tsx` resolves from the working directory, which here is outside the package: pass tsx's own path.
const TSX = import.meta.resolve("tsx");

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], cwd: string, env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["--import", TSX, MAIN, ...args], { cwd, env: { ...process.env, ...env }, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe("omni-diffusion pull and --model <repo-id>, from outside the package", { timeout: 300_000 }, () => {
  let hub: FakeHub;
  let cwd: string;
  let env: Record<string, string>;
  let commit: string;

  before(async () => {
    hub = await FakeHub.start();
    commit = hub.addRepo("fixtures/tiny-shapes-onnx", { dir: DEFAULT_MODEL_DIR, omit: ["MODEL_CARD.md"] });
    hub.addRepo("fixtures/gated-onnx", { dir: DEFAULT_MODEL_DIR, token: "hf_secret" });
    cwd = mkdtempSync(join(tmpdir(), "omni-cli-"));
    env = { HF_ENDPOINT: hub.url, HF_HOME: join(cwd, "hf-home"), HF_TOKEN: "", HF_HUB_CACHE: "" };
  });
  after(async () => {
    await hub.close();
    rmSync(cwd, { recursive: true, force: true });
  });

  it("pull prints the snapshot folder; info and generate then find the model by its id", async () => {
    const pull = await cli(["pull", "fixtures/tiny-shapes-onnx"], cwd, env);
    assert.equal(pull.code, 0, pull.stderr);
    const snapshot = join(cwd, "hf-home", "hub", "models--fixtures--tiny-shapes-onnx", "snapshots", commit);
    assert.equal(pull.stdout.trim(), snapshot);
    assert.match(pull.stderr, /pulled fixtures\/tiny-shapes-onnx@main/);
    assert.match(pull.stderr, /--model fixtures\/tiny-shapes-onnx/);

    const info = await cli(["info", "--model", "fixtures/tiny-shapes-onnx", "--json"], cwd, env);
    assert.equal(info.code, 0, info.stderr);
    assert.equal(JSON.parse(info.stdout).model.modelDir, snapshot);

    const gen = await cli(["generate", "a red circle on a blue background", "--model", "fixtures/tiny-shapes-onnx", "--steps", "2", "--workers", "1", "--threads", "1", "-o", "pulled.png"], cwd, env);
    assert.equal(gen.code, 0, gen.stderr);
    assert.ok(existsSync(join(cwd, "pulled.png")));
  });

  it('--model tiny-shapes names the shipped model from any directory', async () => {
    const info = await cli(["info", "--model", "tiny-shapes", "--json"], cwd, env);
    assert.equal(info.code, 0, info.stderr);
    assert.equal(JSON.parse(info.stdout).model.modelDir, DEFAULT_MODEL_DIR);
  });

  it("an unknown model and a gated repository each fail with one line saying what to do", async () => {
    const missing = await cli(["info", "--model", "acme/not-pulled"], cwd, env);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /model "acme\/not-pulled" not found; tried .*omni-diffusion pull acme\/not-pulled \[OMNI_ERR_CONFIG\]/);
    const gated = await cli(["pull", "fixtures/gated-onnx"], cwd, env);
    assert.equal(gated.code, 1);
    assert.match(gated.stderr, /set HF_TOKEN.*\[OMNI_ERR_HUB_AUTH\]/);
    assert.doesNotMatch(gated.stderr, /\n\s+at /, "no stack trace");
  });

  it("a hub that stops answering ends the pull after --stall-timeout, in one line", async () => {
    // The hub holds the listing for as long as the test runs, so the deadline is the only way this pull can end.
    const { fault, hold } = stallListing();
    hub.listingFaults.set("fixtures/tiny-shapes-onnx", fault);
    try {
      const pull = await cli(["pull", "fixtures/tiny-shapes-onnx", "--stall-timeout", "1", "--dir", "stalled"], cwd, env);
      assert.equal(pull.code, 1);
      assert.match(pull.stderr, /^omni-diffusion: the Hub sent nothing for 1 s while pulling the listing of fixtures\/tiny-shapes-onnx@main; .*\[OMNI_ERR_TRANSPORT\]\n$/);
      assert.equal(pull.stdout, "");
    } finally {
      hub.listingFaults.clear();
      hold.release();
    }
    const bad = await cli(["pull", "fixtures/tiny-shapes-onnx", "--stall-timeout", "0"], cwd, env);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--stall-timeout.*expected an integer in \[1, 86400\], got "0"/);
  });

  it("a listing with a NUL byte in a path is one line, not a stack", async () => {
    hub.listingFaults.set(
      "fixtures/tiny-shapes-onnx",
      editedListing((l) => ({ ...l, siblings: l.siblings.map((s) => (s.rfilename === "unet/model.onnx" ? { ...s, rfilename: "unet/mo\0del.onnx" } : s)) })),
    );
    try {
      const pull = await cli(["pull", "fixtures/tiny-shapes-onnx", "--dir", "nul"], cwd, env);
      assert.equal(pull.code, 1);
      assert.match(pull.stderr, /^omni-diffusion: the Hub's listing of fixtures\/tiny-shapes-onnx@main is malformed: siblings\[\d+\]\.rfilename "unet\/mo\\u0000del\.onnx" has a NUL byte \[OMNI_ERR_TRANSPORT\]\n$/);
    } finally {
      hub.listingFaults.clear();
    }
  });
});
