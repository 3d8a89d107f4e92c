/**
 * What `getStats`/`info` reports about a loaded model. In core because it crosses floors: the worker IPC
 * (`ready`), the `getStats` reply and the servers' model card carry it.
 */
export interface PipelineInfo {
  modelDir: string;
  className: string;
  /** Loaded ONNX components (empty while asleep). */
  components: string[];
  /** Native image size the model was trained at. */
  width: number;
  height: number;
  /** Multiple that width/height must be divisible by. */
  sizeMultiple: number;
  defaults: { numInferenceSteps: number; guidanceScale: number; scheduler: string };
  asleep: boolean;
  /** What decodes previews: `tiny` (≤ 192 px), `approx` (the latent's size) or `full`. Absent: not reported. */
  previews?: "tiny" | "approx" | "full";
  /** The tiny VAE's folder, or null when the model has none. */
  tinyVae?: string | null;
}
