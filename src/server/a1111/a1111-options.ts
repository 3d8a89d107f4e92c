import { z } from "zod";
import { ValidationError } from "../../errors/omni-error.js";
import { a1111SchemaError } from "./a1111-request.js";

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

/** The A1111 options of one server: validated on POST, shared by its clients. */
export class A1111Options {
  readonly #values: Record<string, unknown>;

  constructor(readonly model: string) {
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
    return { ...this.#values };
  }

  /**
   * Applies a posted options object, all or nothing: an unknown key is a 400 naming it and the known ones, a
   * known key of the wrong type a 422 in FastAPI's shape, another checkpoint than the served model a 400.
   */
  set(body: unknown): void {
    if (body === null || typeof body !== "object" || Array.isArray(body)) throw new ValidationError("body: send the options as a JSON object", { field: "body" });
    const unknown = Object.keys(body).filter((k) => !Object.hasOwn(this.#values, k));
    if (unknown.length) {
      const known = Object.keys(this.#values).join(", ");
      throw new ValidationError(`${unknown[0]}: unknown option${unknown.length > 1 ? `s ${unknown.map((k) => `'${k}'`).join(", ")}` : ""}; this server keeps only ${known}`, { field: unknown[0] });
    }
    const r = optionsSchema.partial().safeParse(body);
    if (!r.success) throw a1111SchemaError(r.error);
    const ckpt = r.data.sd_model_checkpoint;
    if (ckpt !== undefined && ckpt !== null && ckpt !== this.model) {
      throw new ValidationError(`sd_model_checkpoint: model '${ckpt}' not found; this server serves '${this.model}'`, { field: "sd_model_checkpoint" });
    }
    for (const [k, v] of Object.entries(r.data)) {
      if (k === "sd_model_checkpoint" || k === "sd_checkpoint_hash" || v === undefined) continue;
      this.#values[k] = v;
    }
  }
}
