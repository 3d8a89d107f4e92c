import type { ServerContext } from "../app/server-context.js";
import { loraCatalogOf } from "../shared/lora-catalogs.js";

/** One entry of A1111's `GET /sdapi/v1/loras` (extensions-builtin/Lora's API: name, alias, path, metadata). */
export interface A1111Lora {
  name: string;
  alias: string;
  path: string;
  metadata: Record<string, string>;
}

/**
 * The LoRAs of `--loras-dir` as A1111 lists them: `alias` is kohya's `ss_output_name` when the file's metadata has
 * one (what A1111 shows), else the name; `<lora:NAME:weight>` takes the name.
 */
export function a1111Loras(ctx: ServerContext): A1111Lora[] {
  const catalog = loraCatalogOf(ctx.config.lorasDir);
  if (!catalog) return [];
  return catalog.rescan().map((e) => {
    const metadata = catalog.metadata(e.name);
    return { name: e.name, alias: metadata.ss_output_name ?? e.name, path: e.path, metadata };
  });
}
