import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { waitGone } from "../helpers/processes.js";
import { decodeB64Png } from "../helpers/server.js";
import { tempDir } from "../helpers/temp-dir.js";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

/** Worker processes (`worker-main`) whose parent is `ppid`, from /proc (tsx's esbuild service is a child too). */
function workersOf(ppid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) !== ppid) continue;
      if (readFileSync(`/proc/${d}/cmdline`, "utf8").includes("worker-main")) out.push(Number(d));
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

/** Collects the child's pino lines; `waitFor` is a latch on the first line matching a predicate. */
function logLines(child: ChildProcess) {
  const lines: Record<string, unknown>[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: () => void }[] = [];
  let buf = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (d: string) => {
    buf += d;
    for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
      const text = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!text.startsWith("{")) continue;
      lines.push(JSON.parse(text) as Record<string, unknown>);
      for (const w of [...waiters]) if (lines.filter(w.pred).length > 0) w.resolve();
    }
  });
  return {
    lines,
    /** Resolves once `count` lines match `pred`; rejects after `ms` or when the server exits first. */
    waitFor(pred: (l: Record<string, unknown>) => boolean, count: number, what: string, ms = 60_000): Promise<Record<string, unknown>[]> {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = lines.filter(pred);
          if (found.length < count) return false;
          clearTimeout(t);
          child.off("exit", onExit);
          resolve(found);
          return true;
        };
        const onExit = (code: number | null) => reject(new Error(`the server exited (${code}) before ${what}`));
        const t = setTimeout(() => reject(new Error(`no ${what} within ${ms}ms`)), ms);
        child.once("exit", onExit);
        if (!check()) waiters.push({ pred: () => lines.filter(pred).length >= count, resolve: () => void check() });
      });
    },
  };
}

test("SIGTERM with requests in flight: every one of them completes, then the server and its workers exit", { timeout: 90_000 }, async () => {
  const child = spawn(process.execPath, ["--import", "tsx", CLI, "serve", "--port", "0", "--workers", "1", "--threads", "1", "--max-batch", "2", "--allow-non-native-sizes", "--data-dir", tempDir("omni-serve-")], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    const log = logLines(child);
    const [serving] = await log.waitFor((l) => l.msg === "omni-diffusion serving", 1, "'serving' line");
    const url = serving!.url as string;
    const workers = workersOf(child.pid!);
    assert.equal(workers.length, 1, "one worker process");

    // Five plain requests and one stream, long enough (3 batches of 2 × 40 steps at 64x64) to be in flight at SIGTERM.
    const send = (i: number, stream = false) =>
      fetch(`${url}/v1/images/generations`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: `a red circle ${i}`, size: "64x64", num_inference_steps: 40, seed: i, ...(stream ? { stream: true } : {}) }),
      });
    const plain = [0, 1, 2, 3, 4].map((i) => send(i).then(async (r) => ({ status: r.status, body: (await r.json()) as { data: { b64_json: string }[] } })));
    const streamed = send(5, true).then(async (r) => ({ status: r.status, text: await r.text() }));
    await log.waitFor((l) => l.msg === "generation accepted", 6, "6 accepted requests");

    child.kill("SIGTERM");
    const results = await Promise.all(plain);
    for (const [i, r] of results.entries()) {
      assert.equal(r.status, 200, `request ${i}: ${JSON.stringify(r.body).slice(0, 200)}`);
      const png = decodeB64Png(r.body.data[0]!.b64_json);
      assert.deepEqual([png.width, png.height], [64, 64]);
    }
    const s = await streamed;
    assert.equal(s.status, 200);
    assert.match(s.text, /event: image_generation\.completed\n/);
    assert.doesNotMatch(s.text, /event: error/);

    const [code] = (await once(child, "exit")) as [number | null];
    assert.equal(code, 0, "a graceful exit");
    const drain = log.lines.find((l) => typeof l.msg === "string" && l.msg.startsWith("shutting down"));
    assert.ok((drain?.inFlight as number) >= 1, `requests were in flight at SIGTERM: ${JSON.stringify(drain)}`);
    assert.ok(log.lines.some((l) => l.msg === "shut down"));
    assert.deepEqual(await waitGone(workers, 10_000), [], "no orphan worker processes");
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
});
