import { ModelLayoutError } from "../errors/omni-error.js";

/**
 * Components of a diffusers export that the ONNX text-to-image pipeline never loads: downloading the
 * SD 1.5 export's safety checker alone costs 1.2 GB.
 */
export const UNUSED_COMPONENTS: readonly string[] = ["safety_checker", "feature_extractor", "vae_encoder", "image_encoder"];

/**
 * Files a component folder needs: configs and tokenizer files (`.json`, `.txt` merges/vocab, sentencepiece
 * `.model`) and ONNX graphs with their external weights (`weights.pb` from diffusers' converter,
 * `model.onnx_data` / `model.onnx.data` from optimum). PyTorch, safetensors and Flax weights are skipped.
 */
const PIPELINE_FILE = /\.(json|txt|model|onnx|onnx_data|onnx\.data|pb)$/i;

/** Throws {@link ModelLayoutError} unless the listing is a diffusers ONNX export (model_index.json + an ONNX UNet). */
export function checkOnnxLayout(repo: string, paths: readonly string[]): void {
  if (!paths.includes("model_index.json")) {
    throw new ModelLayoutError(`${repo} is not a diffusers repository: it has no model_index.json (omni-diffusion pulls diffusers ONNX exports)`, {
      data: { repo },
    });
  }
  if (!paths.some((p) => /^unet\/[^/]+\.onnx$/i.test(p))) {
    const torch = paths.filter((p) => /^unet\/.*\.(safetensors|bin|ckpt)$/i.test(p));
    throw new ModelLayoutError(
      `${repo} is a diffusers repository but not an ONNX export: it has no unet/*.onnx${torch.length ? ` (only ${torch.join(", ")})` : ""}. ` +
        "Pull an ONNX export (some repositories keep one on an `onnx` revision: --revision onnx) or export one with optimum (docs/hub.md)",
      { data: { repo } },
    );
  }
}

/**
 * The components model_index.json declares (entries `[library, class]` with a non-null class), minus the unused
 * ones. Optimum's exports (SDXL's among them) keep diffusers' `vae` entry while the folder is `vae_decoder/`.
 */
export function pipelineComponents(modelIndex: Record<string, unknown>): string[] {
  return Object.entries(modelIndex)
    .filter(([k, v]) => !k.startsWith("_") && Array.isArray(v) && v.length === 2 && v[1] != null)
    .flatMap(([k]) => (k === "vae" ? ["vae", "vae_decoder"] : [k]))
    .filter((k) => !UNUSED_COMPONENTS.includes(k));
}

/** The files of the listing the ONNX pipeline needs: model_index.json plus each component's configs, tokenizer and ONNX files. */
export function selectPipelineFiles(paths: readonly string[], modelIndex: Record<string, unknown>): string[] {
  const components = new Set(pipelineComponents(modelIndex));
  return paths.filter((p) => {
    if (p === "model_index.json") return true;
    const slash = p.indexOf("/");
    return slash > 0 && components.has(p.slice(0, slash)) && PIPELINE_FILE.test(p);
  });
}
