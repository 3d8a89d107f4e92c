/**
 * `omni-diffusion serve` as a real child process (the CLI through tsx): resolves with the child and its URL
 * once it logs "omni-diffusion serving"; rejects if it exits first. Callers pass the flags (a fresh
 * `--data-dir` each, so two serves never share one) and stop the child themselves.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

export async function spawnServe(flags: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", CLI, "serve", ...flags], { stdio: ["ignore", "pipe", "inherit"], env });
  const url = await new Promise<string>((resolve, reject) => {
    let buf = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      buf += d;
      const m = /"url":"(http:\/\/[^"]+)"[^\n]*"msg":"omni-diffusion serving"/.exec(buf);
      if (m) resolve(m[1]!);
    });
    child.once("exit", (code) => reject(new Error(`serve exited (${code}) before serving`)));
  });
  child.stdout!.resume();
  return { child, url };
}
