/**
 * Starts and stops `omni-diffusion serve` as a child process on a free port, for benchmarks that compare
 * server configurations side by side on the shipped model.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** A running CLI server: its process and URL. */
export interface CliServer {
  child: ChildProcess;
  url: string;
}

/**
 * Runs `omni-diffusion serve --port 0 --allow-non-native-sizes ...flags` (benchmarks mix sizes, e.g. 64x64 on
 * the 32x32 model); resolves once it logged its URL (within 120 s).
 */
export async function startCliServer(flags: string[]): Promise<CliServer> {
  const cli = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
  const child = spawn(process.execPath, ["--import", "tsx", cli, "serve", "--port", "0", "--allow-non-native-sizes", "--data-dir", mkdtempSync(join(tmpdir(), "omni-bench-serve-")), ...flags], { stdio: ["ignore", "pipe", "inherit"] });
  child.stdout!.setEncoding("utf8");
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("the server did not start within 120 s")), 120_000);
    let buf = "";
    const onData = (d: string) => {
      buf += d;
      const m = /"url":"([^"]+)","model"/.exec(buf);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
      buf = buf.slice(-4096);
    };
    child.stdout!.on("data", onData);
    child.once("exit", (code) => reject(new Error(`the server exited with ${code} before it listened`)));
  });
  // Keep draining its log lines so a full pipe never stalls the server.
  child.stdout!.resume();
  return { child, url };
}

/** SIGTERM (graceful), then SIGKILL after 60 s. */
export async function stopCliServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 60_000);
  await exited;
  clearTimeout(t);
}
