import { z, type ZodError } from "zod";
import { ValidationError } from "../../errors/omni-error.js";
import { a1111SchemaError } from "./a1111-request.js";
import type { ServedModels } from "../app/served-models.js";

const name = () => z.string().max(256);

/**
 * The options `GET /sdapi/v1/options` lists and `POST` may set, with their types (A1111's names). The values
 * are shared by every client, so only these keys, of these types and sizes, are kept: a client cannot store
 * arbitrary JSON on the server. `sd_checkpoint_hash` is read-only (posting it back is fine).
 */
const optionsSchema = z.strictObject({
  sd_model_checkpoint: name().nullish(),
  sd_checkpoint_hash: z.string().max(256).nullish(),
  sd_vae: name(),
  CLIP_stop_at_last_layers: z.number().int().min(1).max(12),
  samples_format: z.enum(["png"], { message: "this server writes PNG only" }),
  live_previews_enable: z.boolean(),
  show_progress_every_n_steps: z.number().int().min(-1).max(10_000),
  eta_noise_seed_delta: z.number().int().min(0).max(2 ** 32 - 1),
  sd_lora: name(),
});

/** The declared body of `POST /sdapi/v1/options`: any subset of the options, known keys only, each of its type. */
export const optionsPatchSchema = optionsSchema.partial();

/** A body that passed {@link optionsPatchSchema}. */
export type OptionsPatch = z.output<typeof optionsPatchSchema>;

/**
 * A mismatch of {@link optionsPatchSchema} in A1111's shapes: a body that is no object, or an unknown key,
 * is a 400 naming it (and the known keys); a known key of the wrong type a 422 in FastAPI's shape.
 */
export function optionsSchemaError(err: ZodError): ValidationError {
  if (err.issues.some((i) => i.path.length === 0 && i.code === "invalid_type")) return new ValidationError("body: send the options as a JSON object", { field: "body" });
  const unknown = err.issues.flatMap((i) => (i.code === "unrecognized_keys" ? i.keys : []));
  if (unknown.length) {
    const known = Object.keys(optionsSchema.shape).join(", ");
    return new ValidationError(`${unknown[0]}: unknown option${unknown.length > 1 ? `s ${unknown.map((k) => `'${k}'`).join(", ")}` : ""}; this server keeps only ${known}`, { field: unknown[0] });
  }
  return a1111SchemaError(err);
}

/** The A1111 options of one server: validated on POST, shared by its clients. */
export class A1111Options {
  readonly #values: Record<string, unknown>;
  readonly #served: ServedModels | null;

  /** `served`: the server's models, whose default `sd_model_checkpoint` reads and sets (absent: only `model`). */
  constructor(readonly model: string, served?: ServedModels) {
    this.#served = served ?? null;
    this.#values = {
      sd_model_checkpoint: model,
      sd_checkpoint_hash: null,
      sd_vae: "Automatic",
      CLIP_stop_at_last_layers: 1,
      samples_format: "png",
      live_previews_enable: true,
      show_progress_every_n_steps: 10,
      eta_noise_seed_delta: 0,
      sd_lora: "None",
    };
  }

  /** A copy of the current options (`GET /sdapi/v1/options`). */
  get(): Record<string, unknown> {
    return { ...this.#values, ...(this.#served ? { sd_model_checkpoint: this.#served.defaultId } : {}) };
  }

  /**
   * Applies a posted options object that passed {@link optionsPatchSchema} (the route's schema), all or
   * nothing: another checkpoint than the served model is a 400.
   */
  set(patch: OptionsPatch): void {
    const ckpt = patch.sd_model_checkpoint;
    const known = this.#served ? this.#served.ids : [this.model];
    if (ckpt !== undefined && ckpt !== null && !known.includes(ckpt)) {
      if (this.#served) throw new ValidationError(`sd_model_checkpoint: model '${ckpt}' not found; this server serves: ${known.join(", ")}`, { field: "sd_model_checkpoint" });
      throw new ValidationError(`sd_model_checkpoint: model '${ckpt}' not found; this server serves '${this.model}'`, { field: "sd_model_checkpoint" });
    }
    // Checked above, set after: the options apply all or nothing.
    if (ckpt !== undefined && ckpt !== null) this.#served?.setDefault(ckpt);
    for (const [k, v] of Object.entries(patch)) {
      if (k === "sd_model_checkpoint" || k === "sd_checkpoint_hash" || v === undefined) continue;
      this.#values[k] = v;
    }
  }
}
