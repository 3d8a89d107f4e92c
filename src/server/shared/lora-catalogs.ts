import { LoraCatalog } from "../../pipelines/lora/lora-catalog.js";

/** One catalog per LoRA folder for the route plugins that list it (/v1/loras, /sdapi/v1/loras), scanned on first use. */
const catalogs = new Map<string, LoraCatalog>();

/** The catalog of `dir`, or null when the server has no LoRA folder. */
export function loraCatalogOf(dir: string | undefined): LoraCatalog | null {
  if (!dir) return null;
  let c = catalogs.get(dir);
  if (!c) catalogs.set(dir, (c = new LoraCatalog(dir)));
  return c;
}
