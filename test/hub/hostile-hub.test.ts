/**
 * `pullModel` against a hostile or broken stand-in Hub (test/hub/fake-hub.ts with test/hub/hostile-faults.ts): endless
 * and over-long bodies, lying `Content-Length`s, a huge listing, a hub that stalls, and listings no git repository can
 * hold. Every endless answer is capped by the test, and the partial file is measured on disk while the server sends.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { statfs } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { DEFAULT_MODEL_DIR } from "../../src/core/paths.js";
import { ConfigError, IntegrityError, TransportError } from "../../src/errors/omni-error.js";
import { pullModel, type PullOptions } from "../../src/hub/pull-model.js";
import { ManualClock } from "../helpers/manual-clock.js";
import { FakeHub, type FakeListing } from "./fake-hub.js";
import { claimsLength, editedListing, endlessFile, hugeListing, stallFile, stallListing } from "./hostile-faults.js";

const REPO = "hostile/tiny-shapes";
const STORAGE = "models--hostile--tiny-shapes";
/** A small file (served inline by the hub, named by its git blob sha1) that the pipeline selects: 1,024 bytes. */
const SMALL = "unet/extra.json";
const SMALL_CONTENT = Buffer.from(JSON.stringify({ pad: "x".repeat(1024 - 10) }));
const MiB = 1024 * 1024;

const gitSha1 = (b: Buffer) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");
const sizeOrZero = (p: string) => statSync(p, { throwIfNoEntry: false })?.size ?? 0;

/** Records the largest size `path` had each time the server was about to send more. */
function diskProbe(path: string): { probe: () => void; max: () => number } {
  let max = 0;
  return { probe: () => void (max = Math.max(max, sizeOrZero(path))), max: () => Math.max(max, sizeOrZero(path)) };
}

describe("pull from a hostile Hub", { timeout: 120_000 }, () => {
  let hub: FakeHub;
  const dirs: string[] = [];
  const freshCache = () => {
    const d = mkdtempSync(join(tmpdir(), "omni-hostile-"));
    dirs.push(d);
    return d;
  };
  const opts = (cacheDir: string, extra: PullOptions = {}): PullOptions => ({ cacheDir, env: { HF_ENDPOINT: hub.url }, ...extra });
  const smallPartial = (cache: string) => join(cache, STORAGE, "blobs", `${gitSha1(SMALL_CONTENT)}.incomplete`);

  before(async () => {
    assert.equal(SMALL_CONTENT.length, 1024);
    hub = await FakeHub.start();
    hub.addRepo(REPO, { dir: DEFAULT_MODEL_DIR, omit: ["MODEL_CARD.md"], extra: { [SMALL]: SMALL_CONTENT } });
  });
  afterEach(() => {
    hub.fileFaults.clear();
    hub.listingFaults.clear();
    hub.listedSize.clear();
  });
  after(async () => {
    await hub.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("an endless stream for a file listed at 1,024 bytes writes at most 1,024 bytes and fails as an IntegrityError", async () => {
    const cache = freshCache();
    const disk = diskProbe(smallPartial(cache));
    const { fault, stats } = endlessFile(32 * MiB, disk.probe);
    hub.fileFaults.set(SMALL, fault);
    await assert.rejects(pullModel(REPO, opts(cache)), (err: unknown) => {
      assert.ok(err instanceof IntegrityError, String(err));
      assert.match(err.message, /unet\/extra\.json: the Hub sent more than the listed 1024 bytes/);
      return true;
    });
    assert.equal(await stats.done, "client-gone", `the pull stopped reading (the server sent ${stats.sent} bytes)`);
    assert.ok(disk.max() <= 1024, `at most the listed size on disk, saw ${disk.max()}`);
    assert.ok(!existsSync(smallPartial(cache)), "the bad partial file is deleted");
  });

  it("a resumed download (Range) that streams on past the listed size writes no more than the listed size", async () => {
    const cache = freshCache();
    const partial = smallPartial(cache);
    mkdirSync(join(cache, STORAGE, "blobs"), { recursive: true });
    writeFileSync(partial, SMALL_CONTENT.subarray(0, 512));
    const disk = diskProbe(partial);
    const { fault, stats } = endlessFile(32 * MiB, disk.probe);
    hub.fileFaults.set(SMALL, fault);
    await assert.rejects(pullModel(REPO, opts(cache)), (err: unknown) => err instanceof IntegrityError && /more than the listed 1024 bytes/.test(err.message));
    assert.ok(hub.requests.some((q) => q.path.includes("/resolve/") && q.path.endsWith(SMALL) && q.range === "bytes=512-"), "it resumed with a Range");
    assert.equal(await stats.done, "client-gone");
    assert.ok(disk.max() <= 1024, `at most the listed size on disk, saw ${disk.max()}`);
  });

  it("a Content-Length that disagrees with the listed size is refused before a byte is written", async () => {
    for (const claimed of [300 * MiB, 512]) {
      const cache = freshCache();
      const disk = diskProbe(smallPartial(cache));
      const { fault } = claimsLength(claimed, 8 * MiB, disk.probe);
      hub.fileFaults.set(SMALL, fault);
      const seen = hub.requests.length;
      await assert.rejects(pullModel(REPO, opts(cache)), (err: unknown) => {
        assert.ok(err instanceof IntegrityError, String(err));
        assert.match(err.message, new RegExp(`unet/extra\\.json: the Hub announced ${claimed} bytes \\(Content-Length\\), the listing 1024`));
        return true;
      });
      assert.equal(disk.max(), 0, `nothing written for a claim of ${claimed}`);
      assert.equal(hub.requests.slice(seen).filter((q) => q.path.endsWith(SMALL)).length, 1, "not retried");
    }
  });

  it("an LFS file served whole when listed smaller is cut off at its Content-Length, not after 11 MB", async () => {
    const cache = freshCache();
    hub.listedSize.set("unet/model.onnx", 1024);
    await assert.rejects(pullModel(REPO, opts(cache)), (err: unknown) => {
      assert.ok(err instanceof IntegrityError, String(err));
      assert.match(err.message, /unet\/model\.onnx: the Hub announced \d+ bytes \(Content-Length\), the listing 1024/);
      return true;
    });
    const unet = readFileSync(join(DEFAULT_MODEL_DIR, "unet", "model.onnx"));
    const sha = createHash("sha256").update(unet).digest("hex");
    assert.equal(sizeOrZero(join(cache, STORAGE, "blobs", `${sha}.incomplete`)), 0);
  });

  it("a listing over the 16 MiB cap is refused and not read to its end, with or without Content-Length", async () => {
    for (const withLength of [false, true]) {
      // 48 MiB: far more than the socket buffers between the two ends hold, so a reader that stops at 16 MiB leaves the server unfinished.
      const { fault, stats } = hugeListing(48 * MiB, withLength);
      hub.listingFaults.set(REPO, fault);
      await assert.rejects(pullModel(REPO, opts(freshCache())), (err: unknown) => {
        assert.ok(err instanceof TransportError, String(err));
        assert.equal(err.retryable, false);
        assert.match(err.message, /the Hub's listing of hostile\/tiny-shapes@main is larger than 16 MiB/);
        return true;
      });
      assert.equal(await stats.done, "client-gone", `the server sent ${stats.sent} bytes`);
    }
  });

  it("a hub that never answers the listing is given up after 60 s without progress (a fake clock)", async () => {
    const clock = new ManualClock();
    const { fault, hold } = stallListing();
    hub.listingFaults.set(REPO, fault);
    try {
      const pull = pullModel(REPO, opts(freshCache(), { clock }));
      await hold.holding;
      await clock.armed(1);
      clock.advance(59_999);
      assert.equal(clock.timers[0]!.cleared, false, "not yet");
      clock.advance(1);
      await assert.rejects(pull, (err: unknown) => {
        assert.ok(err instanceof TransportError, String(err));
        assert.match(err.message, /the Hub sent nothing for 60 s while pulling the listing of hostile\/tiny-shapes@main/);
        return true;
      });
    } finally {
      hold.release();
    }
  });

  it("a hub that stalls mid-file is given up after the no-progress timeout; the next pull resumes the partial file", async () => {
    const clock = new ManualClock();
    const sent = 100_000;
    const { fault, hold } = stallFile(sent);
    hub.fileFaults.set("unet/model.onnx", fault);
    const cache = freshCache();
    let base: number | undefined;
    let reached!: () => void;
    const received = new Promise<void>((r) => (reached = r));
    try {
      const pull = pullModel(REPO, opts(cache, {
        clock,
        stallTimeoutMs: 5_000,
        onProgress: (p) => {
          if (p.file !== "unet/model.onnx") return;
          base ??= p.doneBytes;
          if (p.doneBytes - base >= sent) reached();
        },
      }));
      await hold.holding;
      await received;
      clock.advance(4_999);
      assert.equal(clock.timers[0]!.cleared, false, "progress re-armed the timer");
      clock.advance(1);
      await assert.rejects(pull, (err: unknown) => {
        assert.ok(err instanceof TransportError, String(err));
        assert.match(err.message, /the Hub sent nothing for 5 s while pulling unet\/model\.onnx.*run the same pull again to resume/);
        return true;
      });
      // What reached the disk is kept (bytes still in flight to it when the pull gave up are not), and resumed.
      const unet = readFileSync(join(DEFAULT_MODEL_DIR, "unet", "model.onnx"));
      const sha = createHash("sha256").update(unet).digest("hex");
      const kept = sizeOrZero(join(cache, STORAGE, "blobs", `${sha}.incomplete`));
      assert.ok(kept <= sent, `kept ${kept} bytes`);
      hub.fileFaults.clear();
      const seen = hub.requests.length;
      const r = await pullModel(REPO, opts(cache));
      const ranges = hub.requests.slice(seen).filter((q) => q.server === "cdn" && q.range).map((q) => q.range);
      assert.deepEqual(ranges, kept > 0 ? [`bytes=${kept}-`] : []);
      assert.equal(createHash("sha256").update(readFileSync(join(r.snapshotDir, "unet", "model.onnx"))).digest("hex"), sha);
    } finally {
      hold.release();
    }
  });

  describe("listings no git repository can hold are one-line errors", () => {
    const cases: { name: string; edit: (l: FakeListing) => void; message: RegExp }[] = [
      {
        name: "a NUL byte in a path",
        edit: (l) => void l.siblings.push({ ...l.siblings.at(-1)!, rfilename: "unet/mo\0del.onnx" }),
        message: /siblings\[\d+\]\.rfilename "unet\/mo\\u0000del\.onnx" has a NUL byte/,
      },
      {
        name: "a negative size",
        edit: (l) => void (l.siblings.find((s) => s.rfilename === "unet/config.json")!.size = -5),
        message: /siblings\[\d+\]\.size of unet\/config\.json is -5, not a whole number of bytes/,
      },
      {
        name: "a fractional size",
        edit: (l) => void (l.siblings.find((s) => s.rfilename === "unet/config.json")!.size = 1.5),
        message: /siblings\[\d+\]\.size of unet\/config\.json is 1\.5, not a whole number of bytes/,
      },
      {
        name: "a negative LFS size",
        edit: (l) => void (l.siblings.find((s) => s.rfilename === "unet/model.onnx")!.lfs!.size = -1),
        message: /siblings\[\d+\]\.lfs\.size of unet\/model\.onnx is -1, not a whole number of bytes/,
      },
      {
        name: "a path that is both a file and a folder",
        edit: (l) => void l.siblings.push({ ...l.siblings.find((s) => s.rfilename === "unet/config.json")!, rfilename: "unet/config.json/x.json" }),
        message: /unet\/config\.json is listed as a file and as a folder \(unet\/config\.json\/x\.json\)/,
      },
      {
        name: "a path listed twice",
        edit: (l) => void l.siblings.push({ ...l.siblings.find((s) => s.rfilename === "unet/config.json")!, size: 1 }),
        message: /unet\/config\.json is listed twice/,
      },
      {
        name: "a path that climbs out of the repository",
        edit: (l) => void l.siblings.push({ ...l.siblings.find((s) => s.rfilename === "unet/config.json")!, rfilename: "unet/../../../x.json" }),
        message: /siblings\[\d+\]\.rfilename "unet\/\.\.\/\.\.\/\.\.\/x\.json" is not a relative path inside the repository/,
      },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        hub.listingFaults.set(REPO, editedListing((l) => (c.edit(l), l)));
        const seen = hub.requests.length;
        await assert.rejects(pullModel(REPO, opts(freshCache())), (err: unknown) => {
          assert.ok(err instanceof TransportError, String(err));
          assert.equal(err.retryable, false);
          assert.match(err.message, /^the Hub's listing of hostile\/tiny-shapes@main is malformed: /);
          assert.match(err.message, c.message);
          assert.doesNotMatch(err.message, /\n/);
          return true;
        });
        assert.ok(hub.requests.slice(seen).every((q) => q.path.startsWith("/api/")), "refused before any download");
      });
    }
  });

  it("a model bigger than the free disk space is refused before its download, naming both numbers", async () => {
    const cache = freshCache();
    const huge = 2 ** 50;
    hub.listedSize.set("unet/model.onnx", huge);
    const seen = hub.requests.length;
    const err = await pullModel(REPO, opts(cache)).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(err.message, /^not enough free disk space in .*omni-hostile-.*: hostile\/tiny-shapes@main needs [\d.]+ PB \(\d+ bytes\) more, and [\d.]+ [kMGTP]?B \(\d+ bytes\) are free/);
    const data = err.data as { neededBytes: number; freeBytes: number };
    assert.ok(data.neededBytes > huge && data.neededBytes < huge + 16 * MiB, String(data.neededBytes));
    const fs = await statfs(cache);
    assert.ok(data.freeBytes > 0 && data.freeBytes < fs.blocks * fs.bsize);
    assert.ok(!hub.requests.slice(seen).some((q) => q.server === "cdn"), "no large file was fetched");
  });
});
