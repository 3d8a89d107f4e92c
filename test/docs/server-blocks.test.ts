/**
 * The blocks verbatim.test.ts cannot run as they stand, because they talk to a server the reader started
 * elsewhere, run here against a real one: the test starts it on a free port and runs the block from the
 * folder where the package is installed (install-package.ts), with only the server's address put in place
 * of the one the block names. The block is found in its document by a string it holds, so an edit to it is
 * what runs. A block that does not answer as the docs say (the OpenAI example asked for 64x64, a 400 on the
 * shipped model; the worker's generate line lacked the key) fails here.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { after, before, describe, it } from "node:test";
import { PACKAGE_ROOT } from "../../src/core/paths.js";
import { startServer } from "../../src/server/omni-server.js";
import { startTestWorker } from "../helpers/worker-servers.js";
import { extractCodeBlocks } from "./code-blocks.js";
import { installPackage } from "./install-package.js";

let base = "";

/** The one block of `doc` that contains `marker`. */
function blockWith(doc: string, marker: string) {
  const found = extractCodeBlocks(readFileSync(join(PACKAGE_ROOT, doc), "utf8")).filter((b) => b.code.includes(marker));
  assert.equal(found.length, 1, `${doc}: exactly one block contains ${JSON.stringify(marker)}`);
  return found[0]!;
}

/** Runs `cmd args` in the install folder with a user's environment plus `env`; resolves with status and output. */
function run(cmd: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(NODE_OPTIONS|NODE_TEST_CONTEXT|OMNI_|npm_)/i.test(k)));
    const child = spawn(cmd, args, { cwd: base, env: { ...clean, PATH: `${join(base, "node_modules", ".bin")}:${process.env.PATH ?? ""}`, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
  });
}

describe("docs: blocks that need a running server, run against one", { timeout: 600_000 }, () => {
  before(() => {
    base = mkdtempSync(join(tmpdir(), "omni-docs-servers-"));
    assert.ok(relative(PACKAGE_ROOT, base).startsWith(".."), "the folder is outside the repository");
    installPackage(base);
  });
  after(() => {
    if (base) rmSync(base, { recursive: true, force: true });
  });

  it("docs/server.md: the OpenAI SDK example, against `serve` with --api-key", async () => {
    const block = blockWith("docs/server.md", "new OpenAI(");
    const server = await startServer({ port: 0, apiKey: "docs-key", logger: false, engineConfig: { numGpus: 1, intraOpNumThreads: 1 } });
    try {
      const code = block.code.replaceAll("http://127.0.0.1:8000", server.url!);
      assert.notEqual(code, block.code, "the block names the server's address");
      writeFileSync(join(base, "openai-example.ts"), `${code}if (res.data?.[0]?.b64_json === undefined) process.exit(3);\n`);
      const r = await run(process.execPath, ["--import", "tsx", "openai-example.ts"], { KEY: "docs-key" });
      assert.equal(r.code, 0, `the block failed:\n${block.code}--- output ---\n${r.output}`);
    } finally {
      await server.close();
    }
  });

  it("docs/wire-protocol.md: the generate line reaches a worker started with --api-key secret", async () => {
    const block = blockWith("docs/wire-protocol.md", "--api-key secret");
    const generate = block.code.split("\n").filter((l) => l.startsWith("omni-diffusion generate"));
    assert.equal(generate.length, 1, block.code);
    const worker = await startTestWorker({ httpPort: 0, apiKey: "secret" });
    try {
      writeFileSync(join(base, "generate-line.sh"), `${generate[0]!.replaceAll("http://gpu-1:8000", worker.httpUrl!)}\n`);
      const r = await run("bash", ["-e", "generate-line.sh"], {});
      assert.equal(r.code, 0, `the line failed:\n${generate[0]}\n--- output ---\n${r.output}`);
      assert.match(r.output, /wrote out\.png \(32x32, seed \d+\)/);
    } finally {
      await worker.close();
    }
  });
});
