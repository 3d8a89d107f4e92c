/**
 * Flag parsing for the benchmarks: `--help`/`-h` prints the script's header comment and exits 0, and an
 * unknown flag or a missing value is one line and exit status 2 (node's parseArgs throws with a stack).
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs, type ParseArgsConfig } from "node:util";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** The first `/** ... *\/` comment of the file at `scriptUrl`, without its ` * ` margins. */
export function headerOf(scriptUrl: string): string {
  const src = readFileSync(fileURLToPath(scriptUrl), "utf8");
  return src.slice(src.indexOf("/**") + 3, src.indexOf(" */")).replace(/^ \* ?/gm, "").trim();
}

/** `parseArgs({ options })` with `--help`/`-h` (from `scriptUrl`'s header) and one-line errors. */
export function benchArgs<const O extends Options>(scriptUrl: string, options: O): ReturnType<typeof parseArgs<{ args: string[]; options: O }>>["values"] {
  const argv = process.argv.slice(2);
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(headerOf(scriptUrl));
    process.exit(0);
  }
  try {
    return parseArgs({ args: argv, options }).values;
  } catch (err) {
    console.error(`${(err as Error).message} (see --help)`);
    process.exit(2);
  }
}
