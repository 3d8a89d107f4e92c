/**
 * `generate`'s files: `--out` is checked before anything loads (a missing folder or a non-PNG name is one
 * line, not a stack trace after the image was made), a JPEG `--image` is named as such ("PNG only", as the
 * server says), and a `--mask` with transparency repaints its transparent pixels (as the server reads an
 * OpenAI mask) and says so. Spawns the real CLI; the mask case runs the shipped model in-process (uniproc).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { PNG } from "pngjs";
import { decodePng, encodeMaskPng } from "../../src/utils/png.js";

const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "omni-cli-files-"));
// An executor export that is not one: were --out checked only after the engine is built, this error would show instead.
writeFileSync(join(dir, "not-an-executor.mjs"), "export class NotAnExecutor {}\n");
const NOT_BUILT = ["--executor", "./not-an-executor.mjs#NotAnExecutor"];

function generate(...args: string[]) {
  const { OMNI_DIFFUSION_DEBUG: _, ...env } = process.env;
  return spawnSync(process.execPath, ["--import", import.meta.resolve("tsx"), MAIN, "generate", ...args], { cwd: dir, env, encoding: "utf8", timeout: 120_000 });
}

/** Exit status 1 and exactly one stderr line matching `re`, no stack. */
function assertOneLine(r: ReturnType<typeof generate>, re: RegExp): void {
  assert.equal(r.status, 1, r.stderr);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line, got:\n${r.stderr}`);
  assert.match(lines[0]!, re);
  assert.doesNotMatch(r.stderr, /^\s+at /m);
}

describe("generate: --out, --image and --mask files", { timeout: 400_000 }, () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("--out into a missing folder is refused before the engine is built, in one line", () => {
    const r = generate("a red circle on a blue background", "--out", join(dir, "missing", "circle.png"), ...NOT_BUILT);
    assertOneLine(r, /^omni-diffusion: --out .*missing\/circle\.png: the folder .*missing does not exist \(create it first\) \[OMNI_ERR_VALIDATION\]$/);
  });

  it("--out x.jpg is refused (generate writes PNG only) instead of PNG bytes under a JPEG name", () => {
    const r = generate("a red circle on a blue background", "--out", "x.jpg", ...NOT_BUILT);
    assertOneLine(r, /^omni-diffusion: --out x\.jpg names a JPEG file, but generate writes PNG only: give a \.png name \[OMNI_ERR_VALIDATION\]$/);
    assert.equal(existsSync(join(dir, "x.jpg")), false);
  });

  it("--out naming a folder is refused", () => {
    assertOneLine(generate("a red circle", "--out", dir, ...NOT_BUILT), /--out .* is a folder; give a file name/);
  });

  it("a JPEG --image or --mask says JPEG, PNG only (not the PNG decoder's complaint)", () => {
    // A JPEG's first bytes: SOI, then a JFIF APP0 segment.
    const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0xff, 0xd9]);
    writeFileSync(join(dir, "photo.jpg"), jpeg);
    for (const flag of ["--image", "--mask"]) {
      const r = generate("a red circle", flag, "photo.jpg", ...NOT_BUILT);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`^omni-diffusion: option '${flag} <file.png>' argument 'photo.jpg' is invalid. photo.jpg is a JPEG image; PNG only`, "m"));
      assert.doesNotMatch(r.stderr, /unrecognised content|end of stream/);
    }
  });

  it("a --mask with transparency repaints its fully transparent pixels, keeps the rest byte for byte, and says so", () => {
    const init = join(dir, "init.png");
    const base = ["--executor", "uniproc", "--threads", "1", "--steps", "6"];
    const made = generate("a green star on a white background", ...base, "--seed", "3", "--out", init);
    assert.equal(made.status, 0, made.stderr);
    // An OpenAI-style mask: opaque black, the left half fully transparent (alpha 0) = repaint. Read by
    // luminance alone it is black everywhere, which repaints nothing.
    const png = new PNG({ width: 32, height: 32, colorType: 6 });
    png.data = Buffer.alloc(32 * 32 * 4);
    for (let p = 0; p < 1024; p++) png.data[p * 4 + 3] = p % 32 < 16 ? 0 : 255;
    writeFileSync(join(dir, "alpha-mask.png"), PNG.sync.write(png, { colorType: 6 }));

    const r = generate("a red circle on a blue background", ...base, "--seed", "2", "--image", init, "--mask", "alpha-mask.png", "--out", "inpaint.png");
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^omni-diffusion: --mask alpha-mask\.png has transparency: its fully transparent pixels are repainted \(OpenAI's convention\): 512 of 1024$/m);
    const [a, b] = [decodePng(readFileSync(init)), decodePng(readFileSync(join(dir, "inpaint.png")))];
    let changed = 0;
    for (let p = 0; p < 1024; p++) {
      for (let c = 0; c < 3; c++) {
        if (p % 32 >= 16) assert.equal(b.data[p * 3 + c], a.data[p * 3 + c], `opaque pixel ${p} is kept`);
        else if (b.data[p * 3 + c] !== a.data[p * 3 + c]) changed++;
      }
    }
    assert.ok(changed > 0, "the transparent half was repainted");
  });

  it("a mask that repaints nothing gets a warning", () => {
    writeFileSync(join(dir, "black.png"), encodeMaskPng({ width: 32, height: 32, data: new Uint8Array(1024) }));
    // The engine is not built (NOT_BUILT), so the warning is printed while the flags are read, then the executor error.
    const r = generate("a red circle", "--image", "black.png", "--mask", "black.png", "--out", "never.png", ...NOT_BUILT);
    assert.match(r.stderr, /^omni-diffusion: warning: --mask black\.png repaints nothing \(no pixel is white or light\); the output will be the --image$/m);
  });
});
