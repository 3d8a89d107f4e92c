/**
 * `omni-diffusion generate --image in.png [--mask mask.png] [--strength s]`: the edit runs end to end through the
 * CLI (uniproc executor, the real model), the written PNG keeps the unmasked pixels, and bad flags are refused
 * naming the flag.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { decodePng, encodeMaskPng } from "../../src/utils/png.js";
import { tempDir } from "../helpers/temp-dir.js";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const run = promisify(execFile);
const generate = (...args: string[]) => run(process.execPath, ["--import", "tsx", CLI, "generate", ...args, "--executor", "uniproc", "--threads", "1"], { timeout: 120_000 });

describe("generate --image / --mask / --strength", { timeout: 400_000 }, () => {
  const dir = tempDir("omni-edit-cli-");
  const init = join(dir, "init.png");

  it("img2img and inpainting from PNG files; the unmasked pixels come back exactly", async () => {
    await generate("a green star on a white background", "--steps", "6", "--seed", "3", "--out", init);
    const mask = { width: 32, height: 32, data: Uint8Array.from({ length: 1024 }, (_, p) => (Math.floor(p / 32) < 16 ? 255 : 0)) };
    writeFileSync(join(dir, "mask.png"), encodeMaskPng(mask));
    const { stdout } = await generate("a red circle on a blue background", "--image", init, "--strength", "0.5", "--steps", "6", "--seed", "1", "--out", join(dir, "edit.png"));
    assert.match(stdout, /wrote .*edit\.png \(32x32, seed 1\)/);
    await generate("a red circle on a blue background", "--image", init, "--mask", join(dir, "mask.png"), "--steps", "6", "--seed", "2", "--out", join(dir, "inpaint.png"));
    const [a, b] = [decodePng(readFileSync(init)), decodePng(readFileSync(join(dir, "inpaint.png")))];
    let changed = 0;
    for (let p = 0; p < 1024; p++) {
      for (let c = 0; c < 3; c++) {
        if (mask.data[p] === 0) assert.equal(b.data[p * 3 + c], a.data[p * 3 + c], `kept pixel ${p}`);
        else if (b.data[p * 3 + c] !== a.data[p * 3 + c]) changed++;
      }
    }
    assert.ok(changed > 0, "the masked half was repainted");
  });

  it("a bad strength, a missing file or a mask of another size is refused, naming what to fix", async () => {
    const fails = async (args: string[], re: RegExp) => {
      const err = await generate("a red circle", ...args, "--out", join(dir, "never.png")).then(
        () => assert.fail("expected a refusal"),
        (e: { code: number; stderr: string }) => e,
      );
      assert.notEqual(err.code, 0);
      assert.match(err.stderr, re);
    };
    await fails(["--image", init, "--strength", "0"], /--strength.*\(0, 1\]/);
    await fails(["--image", join(dir, "missing.png")], /--image.*cannot read .*missing\.png: ENOENT/);
    writeFileSync(join(dir, "small.png"), encodeMaskPng({ width: 8, height: 8, data: new Uint8Array(64) }));
    await fails(["--image", init, "--mask", join(dir, "small.png")], /mask_image is 8x8 but image is 32x32/);
  });
});
