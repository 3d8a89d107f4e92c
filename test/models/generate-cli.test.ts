/**
 * `omni-diffusion generate --model <fixture>` for every layout: the PNG it writes is the torch reference's image.
 * In-process executor (uniproc) to keep it cheap; the multiproc executor is covered by end-to-end.test.ts.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { decodePng } from "../../src/utils/png.js";
import { LAYOUTS, assertPixelsClose, expected, fixtureDir, subsample } from "./fixtures.js";
import { tempDir } from "../helpers/temp-dir.js";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const run = promisify(execFile);

describe("generate CLI on the layout fixtures", { timeout: 300_000 }, () => {
  const out = tempDir("omni-generate-");
  for (const layout of LAYOUTS) {
    it(`${layout}`, async () => {
      const c = expected.layouts[layout].cases[0]!;
      const r = c.request;
      const file = join(out, `${layout}.png`);
      const args = [
        ...["--import", "tsx", CLI, "generate", r.prompt, "--model", fixtureDir(layout), "--out", file, "--executor", "uniproc", "--threads", "1", "--allow-non-native-sizes"],
        ...["--size", `${r.width}x${r.height}`, "--steps", String(r.numInferenceSteps), "--guidance", String(r.guidanceScale), "--seed", String(r.seed)],
        ...(r.negativePrompt ? ["--negative", r.negativePrompt] : []),
      ];
      const { stdout } = await run(process.execPath, args, { timeout: 120_000 });
      assert.match(stdout, new RegExp(`wrote .*${layout}\\.png \\(${r.width}x${r.height}, seed ${r.seed}\\)`));
      assertPixelsClose(subsample(decodePng(readFileSync(file)), c.image.stride), c.image.pixels[0]!, 2, `${layout}/${c.name} (generate)`, 3);
    });
  }
});
