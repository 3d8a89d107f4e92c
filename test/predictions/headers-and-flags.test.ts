/** Issue 23: the parsers of the predictions API's headers and of serve's new flags, and the data-dir lock. */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { defaultDataDir, durationArg } from "../../src/cli/data-dir.js";
import { ConfigError, ValidationError } from "../../src/errors/omni-error.js";
import { DataDirLock, assertDataDirFree } from "../../src/server/predictions/data-dir-lock.js";
import { cancelAfterMs, preferWaitMs } from "../../src/server/predictions/prediction-headers.js";

describe("Prefer: wait", () => {
  it("wait is 60 s, wait=N is N s, other preferences are ignored, none is 0", () => {
    assert.equal(preferWaitMs("wait"), 60_000);
    assert.equal(preferWaitMs("wait=5"), 5_000);
    assert.equal(preferWaitMs("respond-async, wait=12"), 12_000);
    assert.equal(preferWaitMs(undefined), 0);
    assert.equal(preferWaitMs("return=minimal"), 0);
  });
  it("a wait outside 1–60 s or not a number is a 400 naming Prefer", () => {
    for (const bad of ["wait=0", "wait=61", "wait=abc", "wait=1.5"]) {
      assert.throws(() => preferWaitMs(bad), (e: unknown) => e instanceof ValidationError && e.statusCode === 400 && e.field === "Prefer", bad);
    }
  });
});

describe("Cancel-After", () => {
  it("durations with units, combined, or bare seconds", () => {
    assert.equal(cancelAfterMs("90s"), 90_000);
    assert.equal(cancelAfterMs("500ms"), 500);
    assert.equal(cancelAfterMs("1h30m"), 5_400_000);
    assert.equal(cancelAfterMs("2.5"), 2_500);
    assert.equal(cancelAfterMs(undefined), null);
  });
  it("anything else is a 400 naming Cancel-After", () => {
    for (const bad of ["soon", "-5s", "0s", "0", "5 parsecs", "", "9999h"]) {
      assert.throws(() => cancelAfterMs(bad), (e: unknown) => e instanceof ValidationError && e.field === "Cancel-After", bad);
    }
  });
});

describe("serve flags", () => {
  it("--job-ttl takes a duration with its unit", () => {
    assert.equal(durationArg("24h"), 86_400_000);
    assert.equal(durationArg("90s"), 90_000);
    assert.equal(durationArg("7d"), 604_800_000);
    for (const bad of ["24", "0s", "1ms", "h", "-1h"]) assert.throws(() => durationArg(bad), /expected a duration/, bad);
  });
  it("--data-dir defaults to OMNI_DIFFUSION_DATA_DIR, else the XDG data dir", () => {
    assert.equal(defaultDataDir({ OMNI_DIFFUSION_DATA_DIR: "/srv/omni" }), "/srv/omni");
    assert.equal(defaultDataDir({ XDG_DATA_HOME: "/x/data", HOME: "/home/u" }), "/x/data/omni-diffusion");
    assert.match(defaultDataDir({}), /\/\.local\/share\/omni-diffusion$/);
  });
});

describe("the data-dir lock", () => {
  it("one holder; a lock whose process is gone is stale and taken over; release frees it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "omni-lock-"));
    try {
      const lock = DataDirLock.acquire(dir);
      assert.throws(() => DataDirLock.acquire(dir), (e: unknown) => e instanceof ConfigError && /--data-dir/.test(e.message));
      lock.release();
      // A process that has exited: its pid in the lock file names no one.
      const child = spawn(process.execPath, ["-e", ""]);
      await once(child, "exit");
      writeFileSync(join(dir, "serve.lock"), `${child.pid}\n`);
      assertDataDirFree(dir);
      const taken = DataDirLock.acquire(dir);
      assert.equal(readFileSync(join(dir, "serve.lock"), "utf8").trim(), String(process.pid));
      taken.release();
      // A live process (the parent of this one) holds it: refused, naming its pid.
      writeFileSync(join(dir, "serve.lock"), `${process.ppid}\n`);
      assert.throws(() => assertDataDirFree(dir), new RegExp(`in use by another serve \\(pid ${process.ppid}\\).*--data-dir`));
      assert.throws(() => DataDirLock.acquire(dir), ConfigError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
