import assert from "node:assert/strict";
import { relative } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { ExecutorResolutionError } from "../../src/errors/omni-error.js";
import { DiffusionExecutor } from "../../src/executors/base.js";
import { registerExecutor, registeredExecutors } from "../../src/executors/executor-registry.js";
import { ExecutorTypeError } from "../../src/executors/executor-type-error.js";
import { MultiprocExecutor } from "../../src/executors/multiproc-executor.js";
import { builtinExecutorNames, resolveExecutor } from "../../src/executors/resolve-executor.js";
import { UniprocExecutor } from "../../src/executors/uniproc-executor.js";
import { FixtureExecutor } from "../fixtures/executors/custom-executor.js";

const FIXTURE = fileURLToPath(new URL("../fixtures/executors/custom-executor.ts", import.meta.url));
const THROWING = fileURLToPath(new URL("../fixtures/executors/throws-on-import.ts", import.meta.url));
const rel = (p: string) => `./${relative(process.cwd(), p)}`;

/** Asserts the error is an ExecutorTypeError (an ExecutorResolutionError, so an OmniError) whose message matches. */
const typeError = (pattern: RegExp) => (err: unknown) => {
  assert.ok(err instanceof ExecutorTypeError, `ExecutorTypeError, got ${(err as Error)?.name}: ${(err as Error)?.message}`);
  assert.ok(err instanceof ExecutorResolutionError, "an OmniError the CLI prints as one line");
  assert.equal(err.code, "OMNI_ERR_EXECUTOR_RESOLUTION");
  assert.match(err.message, pattern);
  return true;
};

const resolutionError = (...patterns: RegExp[]) => (err: unknown) => {
  assert.ok(err instanceof ExecutorResolutionError, `ExecutorResolutionError, got ${(err as Error)?.name}: ${(err as Error)?.message}`);
  assert.equal(err.code, "OMNI_ERR_EXECUTOR_RESOLUTION");
  for (const p of patterns) assert.match(err.message, p);
  return true;
};

describe("resolveExecutor", () => {
  it("undefined resolves to the multi-process executor", async () => {
    assert.equal(await resolveExecutor(undefined), MultiprocExecutor);
  });

  it("built-in names resolve lazily, case-insensitively", async () => {
    assert.equal(await resolveExecutor("mp"), MultiprocExecutor);
    assert.equal(await resolveExecutor("multiproc"), MultiprocExecutor);
    assert.equal(await resolveExecutor("MultiProc"), MultiprocExecutor);
    assert.equal(await resolveExecutor("uniproc"), UniprocExecutor);
    assert.deepEqual(builtinExecutorNames(), registeredExecutors());
    for (const n of ["mp", "multiproc", "uniproc"]) assert.ok(builtinExecutorNames().includes(n));
  });

  it("a registered backend becomes a built-in name", async () => {
    registerExecutor("fixture-backend", async () => FixtureExecutor);
    assert.equal(await resolveExecutor("fixture-backend"), FixtureExecutor);
    registerExecutor("broken-backend", async () => {
      throw new Error("optional dependency missing");
    });
    await assert.rejects(resolveExecutor("broken-backend"), resolutionError(/built-in executor "broken-backend" failed to load: optional dependency missing/));
  });

  it("a DiffusionExecutor subclass resolves to itself", async () => {
    assert.equal(await resolveExecutor(UniprocExecutor), UniprocExecutor);
    assert.equal(await resolveExecutor(FixtureExecutor), FixtureExecutor);
  });

  it('"file#Export", a default export, a relative path and a file URL all resolve', async () => {
    assert.equal(await resolveExecutor(`${FIXTURE}#FixtureExecutor`), FixtureExecutor);
    assert.equal(await resolveExecutor(FIXTURE), FixtureExecutor);
    assert.equal(await resolveExecutor(`${rel(FIXTURE)}#FixtureExecutor`), FixtureExecutor);
    assert.equal(await resolveExecutor(`${pathToFileURL(FIXTURE).href}#default`), FixtureExecutor);
  });

  it("a class that does not extend DiffusionExecutor is a TypeError", async () => {
    class Plain {}
    await assert.rejects(resolveExecutor(Plain as never), typeError(/class Plain must extend DiffusionExecutor/));
    await assert.rejects(resolveExecutor(DiffusionExecutor as never), typeError(/abstract base/));
    await assert.rejects(resolveExecutor(`${FIXTURE}#NotAnExecutor`), typeError(/export "NotAnExecutor" of ".*custom-executor\.ts" must extend DiffusionExecutor/));
  });

  it("a value that is not a class is a TypeError", async () => {
    await assert.rejects(resolveExecutor(42 as never), typeError(/got number 42/));
    await assert.rejects(resolveExecutor({} as never), typeError(/got an object/));
    await assert.rejects(resolveExecutor((() => 1) as never), typeError(/is not a class/));
    await assert.rejects(resolveExecutor(`${FIXTURE}#notAClass`), typeError(/export "notAClass" .* is not a class \(got number 42\)/));
    await assert.rejects(resolveExecutor(`${FIXTURE}#arrowFunction`), typeError(/export "arrowFunction" .* is not a class/));
  });

  it("a missing module names the module and the import error", async () => {
    await assert.rejects(
      resolveExecutor("./no/such/executor.ts#X"),
      resolutionError(/cannot resolve executorClass "\.\/no\/such\/executor\.ts#X"/, /module "\.\/no\/such\/executor\.ts" could not be imported/, /no\/such\/executor\.ts/),
    );
    await assert.rejects(
      resolveExecutor("no-such-executor-package"),
      resolutionError(/not a built-in executor \(mp, multiproc, uniproc/, /module "no-such-executor-package" could not be imported/),
    );
  });

  it("a missing export names the export and what the module has", async () => {
    await assert.rejects(
      resolveExecutor(`${FIXTURE}#Nope`),
      resolutionError(/has no export "Nope"/, /it exports: .*FixtureExecutor/),
    );
  });

  it("a module that throws while loading reports that error", async () => {
    await assert.rejects(resolveExecutor(`${THROWING}#X`), resolutionError(/could not be imported/, /fixture module refuses to load/));
  });

  it("an empty string is a resolution error", async () => {
    await assert.rejects(resolveExecutor("  "), resolutionError(/empty/));
  });
});
