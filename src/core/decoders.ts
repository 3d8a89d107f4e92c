/**
 * Which decoder turns latents into pixels. Core holds the names (the config and the request validate
 * against them); pipelines/image-decoder.ts does the decoding.
 */

/** Per request: the model's own VAE (`full`, the default) or its tiny VAE (`tiny`: AutoencoderTiny, much faster, coarser). */
export const VAE_CHOICES = ["full", "tiny"] as const;
export type VaeChoice = (typeof VAE_CHOICES)[number];

/**
 * What decodes step previews:
 * - `auto` (default): the tiny VAE when the model has one, else the linear latent → RGB approximation for
 *   4-channel latent models, else (pixel-space models) the model's own decoder;
 * - `tiny`, `approx`: that one (an error at load when the model cannot use it);
 * - `full`: the model's full VAE, at the full size (as costly as a final decode: seconds at 512² on a CPU).
 */
export const PREVIEW_DECODERS = ["auto", "tiny", "approx", "full"] as const;
export type PreviewDecoder = (typeof PREVIEW_DECODERS)[number];
