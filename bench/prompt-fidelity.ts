/**
 * Prompt fidelity of a tiny-shapes model: generates every colour × shape on several backgrounds × seeds
 * at the model's default settings and judges each image with a deterministic pixel classifier
 * (bench/lib/classify.ts). Prints the share of images whose foreground colour and shape match the prompt.
 *
 *   npx tsx bench/prompt-fidelity.ts [--model DIR] [--seeds 2] [--steps N] [--guidance G] [--scheduler NAME] [--sheet out.png]
 *
 * `--grid` instead measures the sampler grid: every sampler the model lists × `--grid-steps` (8,12,20) ×
 * `--grid-prompts` (4 prompts) × `--seeds` seeds, and prints a Markdown table of how many images draw both of the
 * prompt's colours (foreground and background), per sampler and step count (`--grid-samplers a,b` picks others).
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { DEFAULT_MODEL_DIR, OmniDiffusionRequest, encodePng, loadPipeline } from "../src/index.js";
import { classify } from "./lib/classify.js";
import { COLOR_NAMES, SHAPES } from "./lib/shapes.js";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: DEFAULT_MODEL_DIR },
    seeds: { type: "string", default: "2" },
    backgrounds: { type: "string", default: "2" },
    steps: { type: "string" },
    guidance: { type: "string" },
    scheduler: { type: "string" },
    sheet: { type: "string" },
    threads: { type: "string", default: "2" },
    grid: { type: "boolean", default: false },
    "grid-steps": { type: "string", default: "8,12,20" },
    "grid-samplers": { type: "string" },
    "grid-prompts": {
      type: "string",
      default: "a red circle on a blue background;a green square on a white background;a yellow triangle on a black background;a purple star on a yellow background",
    },
  },
});

const pipe = await loadPipeline(values.model!, { intraOpNumThreads: Number(values.threads) });
if (values.grid) {
  await samplerGrid(pipe);
  await pipe.release();
  process.exit(0);
}
const cases: { prompt: string; color: string; shape: string; bg: string; seed: number }[] = [];
COLOR_NAMES.forEach((color, ci) =>
  SHAPES.forEach((shape, si) => {
    for (let b = 0; b < Number(values.backgrounds); b++) {
      // a different background for every (colour, shape, b), never the foreground colour
      const bg = COLOR_NAMES[(ci + 1 + ((si * 3 + b * 5) % 7)) % COLOR_NAMES.length]!;
      for (let s = 0; s < Number(values.seeds); s++) cases.push({ prompt: `a ${color} ${shape} on a ${bg} background`, color, shape, bg, seed: 1000 + s });
    }
  }),
);

const t0 = performance.now();
const results: { ok: { color: boolean; shape: boolean; bg: boolean }; data: Uint8Array; w: number; h: number }[] = [];
const perShape = new Map<string, { n: number; ok: number }>();
const perColor = new Map<string, { n: number; ok: number }>();
for (let i = 0; i < cases.length; i += 16) {
  const chunk = cases.slice(i, i + 16);
  const reqs = chunk.map((c) =>
    new OmniDiffusionRequest({
      prompt: c.prompt,
      seed: c.seed,
      numInferenceSteps: values.steps ? Number(values.steps) : null,
      guidanceScale: values.guidance ? Number(values.guidance) : null,
      scheduler: values.scheduler ?? null,
    }),
  );
  const out = await pipe.generate(reqs);
  reqs.forEach((r, k) => {
    const img = out.imagesFor(r.requestId)[0]!;
    const c = chunk[k]!;
    const got = classify(img.data, img.width);
    const ok = { color: got.foreground === c.color, shape: got.shape === c.shape, bg: got.background === c.bg };
    results.push({ ok, data: img.data, w: img.width, h: img.height });
    for (const [m, key, hit] of [[perShape, c.shape, ok.shape], [perColor, c.color, ok.color]] as const) {
      const e = m.get(key) ?? { n: 0, ok: 0 };
      e.n++;
      if (hit) e.ok++;
      m.set(key, e);
    }
  });
}
const secs = (performance.now() - t0) / 1000;
const pct = (f: (r: (typeof results)[number]) => boolean) => ((100 * results.filter(f).length) / results.length).toFixed(1);
const info = pipe.info;
console.log(`model ${info.modelDir} (${info.className}); ${results.length} images (${cases.length / Number(values.seeds)} prompts × ${values.seeds} seeds) in ${secs.toFixed(1)} s`);
console.log(`settings: ${values.steps ?? info.defaults.numInferenceSteps} steps, guidance ${values.guidance ?? info.defaults.guidanceScale}, scheduler ${values.scheduler ?? info.defaults.scheduler}`);
console.log(`foreground colour matches prompt: ${pct((r) => r.ok.color)} %`);
console.log(`shape matches prompt:             ${pct((r) => r.ok.shape)} %`);
console.log(`background matches prompt:        ${pct((r) => r.ok.bg)} %`);
console.log(`all three:                        ${pct((r) => r.ok.color && r.ok.shape && r.ok.bg)} %`);
console.log(`per shape:  ${[...perShape].map(([k, v]) => `${k} ${((100 * v.ok) / v.n).toFixed(0)}%`).join(", ")}`);
console.log(`per colour: ${[...perColor].map(([k, v]) => `${k} ${((100 * v.ok) / v.n).toFixed(0)}%`).join(", ")}`);

if (values.sheet) {
  // Contact sheet: one row per prompt group, 4× nearest-neighbour upscale, for looking at the images.
  const cols = 16;
  const { w, h } = results[0]!;
  const S = 4;
  const rows = Math.ceil(results.length / cols);
  const W = cols * w * S;
  const H = rows * h * S;
  const sheet = new Uint8Array(W * H * 3);
  results.forEach((r, i) => {
    const ox = (i % cols) * w * S;
    const oy = Math.floor(i / cols) * h * S;
    for (let y = 0; y < h * S; y++)
      for (let x = 0; x < w * S; x++)
        for (let c = 0; c < 3; c++) sheet[((oy + y) * W + ox + x) * 3 + c] = r.data[(Math.floor(y / S) * w + Math.floor(x / S)) * 3 + c]!;
  });
  writeFileSync(values.sheet, encodePng({ width: W, height: H, data: sheet }));
  console.log(`contact sheet: ${values.sheet}`);
}
await pipe.release();

/** The sampler grid (`--grid`): colour fidelity of every listed sampler at each step count, as a Markdown table. */
async function samplerGrid(p: typeof pipe): Promise<void> {
  const steps = values["grid-steps"]!.split(",").map(Number);
  const prompts = values["grid-prompts"]!.split(";").map((s) => s.trim());
  const seeds = Number(values.seeds);
  const parsed = prompts.map((prompt) => {
    const m = /^a (\w+) (\w+) on a (\w+) background$/.exec(prompt);
    if (!m) throw new Error(`--grid-prompts: "${prompt}" is not "a {colour} {shape} on a {colour} background"`);
    return { prompt, fg: m[1]!, bg: m[3]! };
  });
  // euler_ancestral is euler_a under diffusers' name: the same sampler, measured once.
  const listed = p.describe!().schedulers.filter((s) => s !== "euler_ancestral");
  const samplers = values["grid-samplers"] ? values["grid-samplers"].split(",") : listed;
  const t0 = performance.now();
  const rows: string[] = [];
  for (const scheduler of samplers) {
    const cells: string[] = [];
    for (const n of steps) {
      const reqs = parsed.flatMap((c) =>
        Array.from({ length: seeds }, (_, s) => new OmniDiffusionRequest({ prompt: c.prompt, seed: 1000 + s, numInferenceSteps: n, scheduler })),
      );
      const out = await p.generate(reqs);
      let ok = 0;
      reqs.forEach((r, k) => {
        const img = out.imagesFor(r.requestId)[0];
        const c = parsed[Math.floor(k / seeds)]!;
        const got = img ? classify(img.data, img.width) : null;
        if (got && got.foreground === c.fg && got.background === c.bg) ok++;
      });
      cells.push(`${ok}/${reqs.length}`);
    }
    rows.push(`| \`${scheduler}\` | ${cells.join(" | ")} |`);
  }
  console.log(`model ${p.info.modelDir}; ${prompts.length} prompts × ${seeds} seeds (1000…); guidance ${p.info.defaults.guidanceScale}; ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  console.log(`images drawing both of the prompt's colours:\n`);
  console.log(`| sampler | ${steps.map((n) => `${n} steps`).join(" | ")} |`);
  console.log(`| --- | ${steps.map(() => "---").join(" | ")} |`);
  for (const r of rows) console.log(r);
}
