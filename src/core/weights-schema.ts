/**
 * The schemas of a request's weights fields (issue 24): `model` names one of the server's models and `loras`
 * lists LoRAs by name with a scale. Kept beside core/weights.ts so every codec checks them the same way.
 */
import { z } from "zod";

/** Largest |scale| a LoRA may take: A1111 clients send 0-2; past ±10 a delta swamps the weights it is added to. */
export const MAX_LORA_SCALE = 10;

/** Most LoRAs one request may fuse (each is a separate fused session set in the cache). */
export const MAX_LORAS_PER_REQUEST = 16;

/** A model name as a request carries it: what the server lists (a folder name or `owner/name`). */
export const modelNameSchema = z.string().trim().min(1).max(256);

/** One LoRA a request asks for. */
export const loraRefSchema = z
  .object({
    name: z.string().trim().min(1).max(256),
    scale: z.number().finite().min(-MAX_LORA_SCALE).max(MAX_LORA_SCALE),
  })
  .strict();

/** A request's LoRA list; one name at most once (two scales of one LoRA are one LoRA at their sum, said plainly). */
export const loraRefsSchema = z
  .array(loraRefSchema)
  .max(MAX_LORAS_PER_REQUEST)
  .refine((l) => new Set(l.map((x) => x.name)).size === l.length, { message: "each LoRA name may appear once" });
