/** The SDXL layout fixtures (training/fixtures/make_sdxl_fixtures.py) and their torch reference values. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { FIXTURES_DIR, type ExpectedCase } from "../models/fixtures.js";

/** The exports, and sdxl-ensemble: a folder naming sdxl (base) and sdxl-refiner as one model. */
export const SDXL_LAYOUTS = ["sdxl", "sdxl-fp16", "sdxl-turbo", "sdxl-refiner", "sdxl-ensemble"] as const;
export type SdxlLayout = (typeof SDXL_LAYOUTS)[number];

export interface SdxlExpected {
  layouts: Record<SdxlLayout, { tokens: Record<string, number[]>; tokens2: Record<string, number[]>; cases: ExpectedCase[] }>;
}

export const sdxlExpected: SdxlExpected = JSON.parse(readFileSync(join(FIXTURES_DIR, "sdxl-expected.json"), "utf8"));

export function sdxlDir(layout: SdxlLayout): string {
  return join(FIXTURES_DIR, layout);
}
