import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ModelLoadError } from "../errors/omni-error.js";
import { readModelJson } from "./model-files.js";

const BOS = "<|startoftext|>";
const EOS = "<|endoftext|>";
/** CLIP's pre-tokenizer split (openai/CLIP simple_tokenizer.py, as HF's tokenizer.json writes it). */
const CLIP_SPLIT = "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

/**
 * The tokenizer.json that HF's CLIPTokenizerFast builds from a CLIP tokenizer's slow files (vocab.json +
 * merges.txt), which is how many Hub exports ship their tokenizer folder. Null when the folder has no such files.
 */
export function clipTokenizerFromFiles(modelDir: string, folder = "tokenizer"): Record<string, unknown> | null {
  const dir = join(modelDir, folder);
  if (!existsSync(join(dir, "vocab.json")) || !existsSync(join(dir, "merges.txt"))) return null;
  const vocab = readModelJson<Record<string, number>>(modelDir, `${folder}/vocab.json`)!;
  const merges = readFileSync(join(dir, "merges.txt"), "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith("#version"));
  for (const tok of [BOS, EOS]) {
    if (typeof vocab[tok] !== "number") {
      throw new ModelLoadError(`${join(dir, "vocab.json")} has no ${tok}: only CLIP vocabularies can be loaded without a tokenizer.json`, {
        data: { modelDir, component: folder },
      });
    }
  }
  const special = (content: string) => ({ id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: content === BOS, special: true });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(BOS), special(EOS)],
    normalizer: { type: "Sequence", normalizers: [{ type: "NFC" }, { type: "Replace", pattern: { Regex: "\\s+" }, content: " " }, { type: "Lowercase" }] },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: CLIP_SPLIT }, behavior: "Removed", invert: true },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: { type: "RobertaProcessing", sep: [EOS, vocab[EOS]], cls: [BOS, vocab[BOS]], trim_offsets: false, add_prefix_space: false },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: EOS,
      continuing_subword_prefix: "",
      end_of_word_suffix: "</w>",
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}
