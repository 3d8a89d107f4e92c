import { existsSync } from "node:fs";
import { join } from "node:path";
import { ModelLoadError } from "../../errors/omni-error.js";
import { componentPath, readModelJson } from "../model-files.js";
import { floatData, intTensor, OnnxModel, type OnnxIO, type SessionOptions } from "../onnx-model.js";
import { PromptEncoder } from "../prompt-encoder.js";

/** Text conditioning of SDXL prompts: `hidden` [n, tokens, dim] flattened, `pooled` [n, pooledDim]. */
export interface SdxlTextEmbeddings {
  hidden: Float32Array;
  pooled: Float32Array;
  tokens: number;
  dim: number;
  pooledDim: number;
}

/** One of SDXL's text encoders with its tokenizer and the name of its penultimate hidden-state output. */
interface Encoder {
  model: OnnxModel;
  tokenizer: PromptEncoder;
  /** `hidden_states.<layers - 1>`, known once the session is loaded. */
  penultimate: string | null;
}

/**
 * SDXL's two text encoders (the refiner has only the second): each prompt is tokenized by its encoder's own
 * tokenizer (`tokenizer` pads with the end token, `tokenizer_2` with "!"), the penultimate hidden states of both
 * are concatenated (768 + 1280 = 2048 wide; 1280 for the refiner) and the pooled embedding is
 * `text_encoder_2`'s projection (`text_embeds`), as diffusers' `encode_prompt` does.
 */
export class SdxlTextEncoders {
  readonly #encoders: Encoder[];
  readonly #modelDir: string;
  /**
   * Embeddings of recent prompt pairs (least recently used first), as PromptEncoder keeps SD's: the empty negative
   * prompt and repeated prompts skip both encoders (OpenCLIP bigG alone is 695 M parameters). Bounded in bytes.
   */
  readonly #cache = new Map<string, { hidden: Float32Array; pooled: Float32Array }>();
  #cacheBytes = 0;
  #shape: { tokens: number; dim: number; pooledDim: number } | null = null;
  static readonly cacheLimitBytes = 32 * 1024 * 1024;

  constructor(modelDir: string, opts: SessionOptions) {
    this.#modelDir = modelDir;
    const present = ["text_encoder", "text_encoder_2"].filter((c) => existsSync(join(modelDir, c, "model.onnx")));
    if (!present.includes("text_encoder_2")) componentPath(modelDir, "text_encoder_2"); // throws, naming the file
    this.#encoders = present.map((c) => {
      const model = new OnnxModel(c, componentPath(modelDir, c), opts);
      return { model, tokenizer: new PromptEncoder(modelDir, model, c === "text_encoder" ? "tokenizer" : "tokenizer_2"), penultimate: null };
    });
  }

  /** True when the folder is an SDXL export (it has `text_encoder_2`). */
  static detect(modelDir: string): boolean {
    return existsSync(join(modelDir, "text_encoder_2", "model.onnx"));
  }

  get models(): OnnxModel[] {
    return this.#encoders.map((e) => e.model);
  }

  /** Both encoders in use (base, Turbo) or only `text_encoder_2` (the refiner). */
  get dual(): boolean {
    return this.#encoders.length === 2;
  }

  get maxLength(): number {
    return this.#encoders[0]!.tokenizer.maxLength;
  }

  /**
   * Finds each encoder's penultimate hidden state by name (after the sessions are loaded): `hidden_states.<L - 1>`
   * for the `num_hidden_layers` L of its config, else one below the highest `hidden_states.N` output. An export
   * without it (exported without `output_hidden_states`) is refused, naming the output it lacks.
   */
  checkOutputs(): void {
    for (const e of this.#encoders) {
      const c = e.model.component;
      const layers = readModelJson<{ num_hidden_layers?: number }>(this.#modelDir, `${c}/config.json`, false)?.num_hidden_layers;
      const found = e.model.outputs.map((o) => /^hidden_states\.(\d+)$/.exec(o.name)).filter((m) => m !== null).map((m) => Number(m[1]));
      const want = typeof layers === "number" ? layers - 1 : found.length ? Math.max(...found) - 1 : null;
      const name = want === null ? "hidden_states.<layers - 1>" : `hidden_states.${want}`;
      if (want === null || want < 0 || !found.includes(want)) {
        throw new ModelLoadError(
          `${c} (${e.model.path}) has no output ${name}, the penultimate hidden state SDXL conditions on; it has ${e.model.outputs.map((o) => o.name).join(", ")} (export it with the hidden states: optimum-cli export onnx does)`,
          { data: { component: c, missing: name } },
        );
      }
      if (c === "text_encoder_2" && !e.model.outputs.some((o) => o.name === "text_embeds")) {
        throw new ModelLoadError(`${c} (${e.model.path}) has no output text_embeds (the pooled projection SDXL's UNet takes); is it a CLIPTextModelWithProjection export?`, {
          data: { component: c, missing: "text_embeds" },
        });
      }
      e.penultimate = name;
    }
  }

  /** Each encoder's component, penultimate output and I/O (after {@link checkOutputs}). */
  describe(): { component: string; hiddenState: string; inputs: OnnxIO[]; outputs: OnnxIO[] }[] {
    return this.#encoders.map((e) => ({ component: e.model.component, hiddenState: e.penultimate ?? "?", inputs: e.model.inputs, outputs: e.model.outputs }));
  }

  /** Token ids of `text` by the tokenizer of encoder `k` (0: `tokenizer`, 1: `tokenizer_2`; the refiner has only its own). */
  tokenize(text: string, k: number): number[] {
    return this.#encoders[Math.min(k, this.#encoders.length - 1)]!.tokenizer.tokenize(text);
  }

  /** Embeddings of prompt pairs `[prompt, prompt2]`: the pairs not cached in one call per encoder. */
  async encode(pairs: [string, string][]): Promise<SdxlTextEmbeddings> {
    const key = (p: [string, string]) => `${p[0]}\u0000${p[1]}`;
    const missing = [...new Map(pairs.filter((p) => !this.#cache.has(key(p))).map((p) => [key(p), p])).values()];
    if (missing.length) {
      const fresh = await this.#run(missing);
      this.#shape = { tokens: fresh.tokens, dim: fresh.dim, pooledDim: fresh.pooledDim };
      const per = fresh.tokens * fresh.dim;
      missing.forEach((p, k) => this.#remember(key(p), { hidden: fresh.hidden.slice(k * per, (k + 1) * per), pooled: fresh.pooled.slice(k * fresh.pooledDim, (k + 1) * fresh.pooledDim) }));
    }
    const { tokens, dim, pooledDim } = this.#shape!;
    const hidden = new Float32Array(pairs.length * tokens * dim);
    const pooled = new Float32Array(pairs.length * pooledDim);
    pairs.forEach((p, i) => {
      const e = this.#cache.get(key(p))!;
      this.#cache.delete(key(p)); // most recently used last
      this.#cache.set(key(p), e);
      hidden.set(e.hidden, i * tokens * dim);
      pooled.set(e.pooled, i * pooledDim);
    });
    return { hidden, pooled, tokens, dim, pooledDim };
  }

  #remember(k: string, e: { hidden: Float32Array; pooled: Float32Array }): void {
    const bytes = e.hidden.byteLength + e.pooled.byteLength;
    if (bytes > SdxlTextEncoders.cacheLimitBytes) return;
    this.#cache.set(k, e);
    this.#cacheBytes += bytes;
    for (const [old, v] of this.#cache) {
      if (this.#cacheBytes <= SdxlTextEncoders.cacheLimitBytes || old === k) break;
      this.#cache.delete(old);
      this.#cacheBytes -= v.hidden.byteLength + v.pooled.byteLength;
    }
  }

  /** One call per encoder over `pairs`. */
  async #run(pairs: [string, string][]): Promise<SdxlTextEmbeddings> {
    const n = pairs.length;
    const outs = await Promise.all(
      this.#encoders.map(async (e, k) => {
        // The refiner's one encoder takes `prompt`: diffusers zips [prompt, prompt_2] with its one tokenizer.
        const texts = pairs.map((p) => p[k]!);
        const input = e.model.inputs[0]!;
        const ids = texts.flatMap((t) => e.tokenizer.tokenize(t));
        const out = await e.model.run({ [input.name]: intTensor(input.type, ids, [n, e.tokenizer.maxLength]) });
        const hidden = out[e.penultimate!]!;
        const [, tokens, dim] = hidden.dims as number[];
        return { hidden: floatData(hidden), tokens: tokens!, dim: dim!, pooled: out.text_embeds ? floatData(out.text_embeds) : null };
      }),
    );
    const tokens = outs[0]!.tokens;
    const dim = outs.reduce((a, o) => a + o.dim, 0);
    const hidden = new Float32Array(n * tokens * dim);
    // Concatenated along the last axis: for each token, encoder 1's features then encoder 2's.
    for (let i = 0; i < n * tokens; i++) {
      let off = i * dim;
      for (const o of outs) {
        hidden.set(o.hidden.subarray(i * o.dim, (i + 1) * o.dim), off);
        off += o.dim;
      }
    }
    const pooled = outs.at(-1)!.pooled!;
    return { hidden, pooled, tokens, dim, pooledDim: pooled.length / n };
  }
}
