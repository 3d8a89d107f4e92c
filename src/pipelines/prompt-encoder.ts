import { existsSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { ModelLoadError } from "../errors/omni-error.js";
import { clipTokenizerFromFiles } from "./clip-tokenizer.js";
import { readModelJson } from "./model-files.js";
import { floatData, intTensor, type OnnxModel } from "./onnx-model.js";

/** Text embeddings for a batch of prompts: [batch, tokens, dim] flattened. */
export interface PromptEmbeddings {
  data: Float32Array;
  tokens: number;
  dim: number;
}

/**
 * Prompt → token ids (the model's own tokenizer.json through @huggingface/tokenizers, or a CLIP tokenizer's
 * vocab.json + merges.txt; padded/truncated to the model's length) → text-encoder hidden states.
 */
export class PromptEncoder {
  readonly maxLength: number;
  /** Which files the tokenizer came from. */
  readonly source: "tokenizer.json" | "vocab.json + merges.txt";
  readonly #tokenizer: Tokenizer;
  readonly #padId: number;
  /** The tokenizer appends an end token (CLIP's post-processor): truncation must keep it, as HF's does. */
  readonly #keepsLastToken: boolean;
  readonly #encoder: OnnxModel;
  /**
   * Embeddings of recent prompts (least recently used first), so a request whose prompt or negative prompt
   * (the empty one, mostly) was encoded lately does not run the text encoder on the denoise loop's critical
   * path again. Bounded in bytes.
   */
  readonly #cache = new Map<string, Float32Array>();
  #cacheBytes = 0;
  /** [tokens, dim] of one embedding, known after the first encoder call. */
  #shape: { tokens: number; dim: number } | null = null;
  static readonly cacheLimitBytes = 32 * 1024 * 1024;

  /** `tokenizerFolder`: SDXL's second encoder reads `tokenizer_2/`. */
  constructor(modelDir: string, encoder: OnnxModel, tokenizerFolder = "tokenizer") {
    const file = join(modelDir, tokenizerFolder, "tokenizer.json");
    const json: Record<string, any> | null = existsSync(file) ? readModelJson<Record<string, any>>(modelDir, `${tokenizerFolder}/tokenizer.json`)! : clipTokenizerFromFiles(modelDir, tokenizerFolder);
    this.source = existsSync(file) ? "tokenizer.json" : "vocab.json + merges.txt";
    if (!json) {
      throw new ModelLoadError(`model folder ${modelDir} has no ${tokenizerFolder}/tokenizer.json (Hugging Face tokenizers format) nor a CLIP tokenizer's vocab.json + merges.txt`, {
        data: { modelDir, component: "tokenizer" },
      });
    }
    const config = readModelJson<Record<string, any>>(modelDir, `${tokenizerFolder}/tokenizer_config.json`, false) ?? {};
    try {
      this.#tokenizer = new Tokenizer(json, config);
    } catch (err) {
      throw new ModelLoadError(`cannot build the tokenizer from ${file}: ${(err as Error).message}`, { cause: err });
    }
    const declared = json.padding?.strategy?.Fixed ?? json.truncation?.max_length ?? config.model_max_length;
    this.maxLength = typeof declared === "number" && declared > 0 && declared < 1_000_000 ? declared : 77;
    // CLIP exports pad with their end token; ours names [PAD]; fall back to the end-of-text token, then 0.
    const padToken: string | undefined = json.padding?.pad_token ?? config.pad_token?.content ?? config.pad_token ?? config.eos_token?.content ?? config.eos_token;
    this.#padId = json.padding?.pad_id ?? (padToken !== undefined ? this.#tokenizer.token_to_id(padToken) : undefined) ?? 0;
    this.#keepsLastToken = json.post_processor != null;
    this.#encoder = encoder;
  }

  /** Token ids of one prompt, exactly `maxLength` long. */
  tokenize(text: string): number[] {
    let ids = this.#tokenizer.encode(text).ids;
    if (ids.length > this.maxLength) {
      ids = this.#keepsLastToken ? [...ids.slice(0, this.maxLength - 1), ids[ids.length - 1]!] : ids.slice(0, this.maxLength);
    }
    while (ids.length < this.maxLength) ids.push(this.#padId);
    return ids;
  }

  /** Embeddings of several prompts: the ones not cached are encoded in one text-encoder call. */
  async encode(prompts: string[]): Promise<PromptEmbeddings> {
    if (!prompts.length) return { data: new Float32Array(0), tokens: this.maxLength, dim: this.#shape?.dim ?? 0 };
    const missing = [...new Set(prompts.filter((p) => !this.#cache.has(p)))];
    const fresh = missing.length ? await this.#run(missing) : null;
    if (fresh) this.#shape = { tokens: fresh.tokens, dim: fresh.dim };
    const { tokens, dim } = this.#shape!;
    const per = tokens * dim;
    const data = new Float32Array(prompts.length * per);
    prompts.forEach((p, i) => {
      const k = fresh ? missing.indexOf(p) : -1;
      const emb = k >= 0 ? fresh!.data.subarray(k * per, (k + 1) * per) : this.#cache.get(p)!;
      data.set(emb, i * per);
    });
    missing.forEach((p, k) => this.#remember(p, fresh!.data.slice(k * per, (k + 1) * per)));
    for (const p of prompts) this.#touch(p);
    return { data, tokens, dim };
  }

  /** Text states of `[prompt, negative prompt or null]` pairs (null: no guidance row), in one {@link encode} call. */
  async conditioning(pairs: [string, string | null][]): Promise<{ cond: Float32Array; uncond: Float32Array | null }[]> {
    const texts = [...new Set(pairs.flatMap(([p, n]) => (n === null ? [p] : [p, n])))];
    const emb = await this.encode(texts);
    const per = emb.tokens * emb.dim;
    const embOf = (t: string) => emb.data.subarray(texts.indexOf(t) * per, (texts.indexOf(t) + 1) * per);
    return pairs.map(([p, n]) => ({ cond: embOf(p), uncond: n === null ? null : embOf(n) }));
  }

  #touch(p: string): void {
    const v = this.#cache.get(p);
    if (!v) return;
    this.#cache.delete(p);
    this.#cache.set(p, v);
  }

  #remember(p: string, emb: Float32Array): void {
    if (emb.byteLength > PromptEncoder.cacheLimitBytes) return;
    this.#cache.set(p, emb);
    this.#cacheBytes += emb.byteLength;
    for (const [old, v] of this.#cache) {
      if (this.#cacheBytes <= PromptEncoder.cacheLimitBytes) break;
      this.#cache.delete(old);
      this.#cacheBytes -= v.byteLength;
    }
  }

  /** One text-encoder call over `prompts`. */
  async #run(prompts: string[]): Promise<PromptEmbeddings> {
    const input = this.#encoder.inputs[0];
    if (!input) throw new ModelLoadError("text_encoder has no inputs");
    const ids = prompts.flatMap((p) => this.tokenize(p));
    const out = await this.#encoder.run({ [input.name]: intTensor(input.type, ids, [prompts.length, this.maxLength]) });
    const first = this.#encoder.outputs[0]?.name ?? Object.keys(out)[0]!;
    const hidden = out["last_hidden_state"] ?? out[first]!;
    const [, tokens, dim] = hidden.dims as number[];
    return { data: floatData(hidden), tokens: tokens!, dim: dim! };
  }
}
