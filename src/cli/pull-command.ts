import { resolve } from "node:path";
import { SingleBar } from "cli-progress";
import type { Command } from "commander";
import { ValidationError } from "../errors/omni-error.js";
import { hubCacheDir, parseRepoSpec } from "../core/hub-cache.js";
import { pullModel } from "../hub/pull-model.js";
import { DEFAULT_STALL_TIMEOUT_MS } from "../hub/stall-watch.js";
import { intArg } from "./options.js";

interface PullFlags {
  revision?: string;
  dir?: string;
  stallTimeout: number;
}

const mb = (n: number) => (n / 1e6).toFixed(n < 1e7 ? 2 : 0);

/**
 * `omni-diffusion pull <repo-id>`: downloads a diffusers ONNX export from the Hugging Face Hub into the Hub
 * cache (see docs/hub.md); `--model <repo-id>` then finds it there. Progress goes to stderr (a bar on a
 * terminal), the snapshot folder to stdout.
 */
export function addPullCommand(program: Command): void {
  program
    .command("pull")
    .description("download a diffusers ONNX model from the Hugging Face Hub into the Hub cache ($HF_HOME); HF_TOKEN for gated models")
    .argument("<repo-id>", "Hugging Face model id, owner/name (owner/name@revision also works)")
    .option("--revision <rev>", "branch, tag or commit (default: main)")
    .option("--dir <dir>", "Hub cache folder to fill (default: $HF_HUB_CACHE, else $HF_HOME/hub)")
    .option(
      "--stall-timeout <seconds>",
      "give up when the Hub sends nothing for this long; the partial file is kept and the next pull resumes it",
      intArg(1, 86_400),
      DEFAULT_STALL_TIMEOUT_MS / 1000,
    )
    .action(async (spec: string, flags: PullFlags) => {
      const parsed = parseRepoSpec(spec);
      if (!parsed) throw new ValidationError(`"${spec}" is not a Hugging Face model id (owner/name, optionally @revision)`, { field: "repo-id" });
      const revision = flags.revision ?? parsed.revision;
      const cacheDir = flags.dir ? resolve(flags.dir) : hubCacheDir();
      const bar = process.stderr.isTTY
        ? new SingleBar({ format: "pulling [{bar}] {percentage}% {doneMb}/{totalMb} MB {file}", hideCursor: true, stream: process.stderr }, undefined)
        : null;
      let started = false;
      let lastFile = "";
      try {
        const result = await pullModel(parsed.repoId, {
          revision,
          cacheDir,
          stallTimeoutMs: flags.stallTimeout * 1000,
          onProgress: (p) => {
            if (bar) {
              if (!started) bar.start(p.totalBytes, 0, { doneMb: "0", totalMb: mb(p.totalBytes), file: p.file });
              started = true;
              bar.setTotal(p.totalBytes);
              bar.update(p.doneBytes, { doneMb: mb(p.doneBytes), totalMb: mb(p.totalBytes), file: p.file });
            } else if (p.file !== lastFile) {
              lastFile = p.file;
              console.error(`pulling ${p.file} (${p.filesDone + 1}/${p.filesTotal})`);
            }
          },
        });
        bar?.stop();
        const fetched = result.downloadedBytes ? `${mb(result.downloadedBytes)} MB downloaded` : "all files were cached";
        console.error(`pulled ${result.repoId}@${result.revision} (commit ${result.commit}, ${result.files.length} files, ${fetched})`);
        const useAs = flags.dir ? result.snapshotDir : `${result.repoId}${revision === "main" ? "" : `@${revision}`}`;
        console.error(`use it with: omni-diffusion generate "..." --model ${useAs}`);
        console.log(result.snapshotDir);
      } finally {
        bar?.stop();
      }
    });
}
