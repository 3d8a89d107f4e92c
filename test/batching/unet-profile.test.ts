/**
 * The UNet profile the compute budget is priced with: learned from observed calls (fed here by hand, so no
 * timing is involved), or fixed.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { UnetProfile } from "../../src/pipelines/unet-profile.js";

/** Feeds calls that cost `fixed + perRow × rows`, each call size twice (the first of a size is discarded). */
function feed(p: UnetProfile, size: string, rows: number[], fixed: number, perRow: number): void {
  for (const r of rows) for (let i = 0; i < 2; i++) p.observe(size, r, fixed + perRow * r);
}

describe("UnetProfile", () => {
  it("learns a size's cost per call size, interpolates between them and assumes no gain beyond the largest", () => {
    const p = new UnetProfile();
    feed(p, "32x32", [1, 2, 4, 8], 2, 1);
    assert.equal(p.estimate("32x32", 4), 6);
    assert.equal(p.estimate("32x32", 3), 5);
    assert.equal(p.estimate("32x32", 16), 20, "beyond the largest call measured: in proportion to rows");
    assert.equal(p.estimate("32x32", 0.5), 2.5, "below the smallest: along the line through the two smallest");
  });

  it("the first call at a new size is dropped once a second comes, then the median of the recent calls counts", () => {
    const p = new UnetProfile({ window: 3 });
    p.observe("32x32", 1, 100);
    assert.equal(p.estimate("32x32", 1), 100);
    p.observe("32x32", 1, 10);
    assert.equal(p.estimate("32x32", 1), 10);
    p.observe("32x32", 1, 50);
    p.observe("32x32", 1, 12);
    assert.equal(p.estimate("32x32", 1), 12, "one slow call does not move the figure");
    p.observe("32x32", 1, 14);
    p.observe("32x32", 1, 16);
    assert.equal(p.estimate("32x32", 1), 14, "the window has moved on");
    assert.deepEqual(p.snapshot(32)[0]!.calls, [{ rows: 1, ms: 14, n: 6 }]);
  });

  it("a call size not seen for a while is forgotten, so it gets measured again", () => {
    const p = new UnetProfile({ forgetAfter: 10 });
    feed(p, "32x32", [1, 8], 0, 1);
    for (let i = 0; i < 10; i++) p.observe("32x32", 1, 1);
    assert.deepEqual(p.snapshot(32)[0]!.calls.map((c) => c.rows), [1, 8]);
    p.observe("32x32", 1, 1);
    assert.deepEqual(p.snapshot(32)[0]!.calls.map((c) => c.rows), [1]);
  });

  it("the knee: calls grow while a bigger call is more than 5 % cheaper per row, trying twice the largest while it is", () => {
    const p = new UnetProfile();
    assert.equal(p.knee("32x32", 32), null, "nothing measured");
    feed(p, "32x32", [1], 1, 1);
    assert.equal(p.knee("32x32", 32), null, "one call size says nothing about gains");
    p.observe("32x32", 2, 3);
    assert.equal(p.knee("32x32", 32), null, "a call size seen once is not measured yet (it may have paid for a new input shape)");
    feed(p, "32x32", [2, 4, 8], 1, 1);
    // Per row 2, 1.5, 1.25, 1.125: the largest is still the cheapest by more than 5 %, so 16 rows get tried.
    assert.deepEqual(p.knee("32x32", 32), { rows: 16, ms: 18, source: "learned", exploring: true });
    feed(p, "32x32", [16], 1, 1);
    assert.deepEqual(p.knee("32x32", 32), { rows: 32, ms: 34, source: "learned", exploring: true });
    assert.deepEqual(p.knee("32x32", 16), { rows: 16, ms: 17, source: "learned", exploring: false }, "never past maxBatchRows");
    feed(p, "32x32", [32], 1, 1);
    // 1.03125 per row at 32 is not 5 % below 16's 1.0625: the knee stays at 16.
    assert.deepEqual(p.knee("32x32", 32), { rows: 16, ms: 17, source: "learned", exploring: false });
  });

  it("with one call size of 4 rows or more measured (steady traffic), the knee probes half of it", () => {
    const p = new UnetProfile();
    feed(p, "512x512", [4], 0, 10);
    assert.deepEqual(p.knee("512x512", 32), { rows: 2, ms: 40, source: "learned", exploring: true }, "priced no lower than the call measured");
    feed(p, "512x512", [2], 0, 10);
    assert.deepEqual(p.knee("512x512", 32), { rows: 2, ms: 20, source: "learned", exploring: false });
  });

  it("a size whose cost grows in proportion to rows (512x512 on a CPU) gets calls of one row, and tries bigger ones once in a while", () => {
    const p = new UnetProfile({ forgetAfter: 50 });
    feed(p, "512x512", [1, 2, 4], 0, 10);
    assert.deepEqual(p.knee("512x512", 32), { rows: 1, ms: 10, source: "learned", exploring: false });
    // Calls of 2 and 4 rows keep coming now and then, so they are not forgotten; none bigger for 50 calls.
    for (let i = 0; i < 16; i++) feed(p, "512x512", [1, 1, 2, 4], 0, 10);
    assert.deepEqual(p.knee("512x512", 32), { rows: 8, ms: 80, source: "learned", exploring: true });
    feed(p, "512x512", [8], 0, 10);
    assert.deepEqual(p.knee("512x512", 32), { rows: 1, ms: 10, source: "learned", exploring: false });
  });

  it("a size not measured yet is priced from the nearest measured size, a row counting as its pixel ratio", () => {
    const p = new UnetProfile();
    feed(p, "32x32", [1, 2, 4, 8, 16, 32], 1, 1);
    assert.equal(p.knee("32x32", 32)!.rows, 16);
    assert.equal(p.estimate("64x64", 1), p.estimate("32x32", 4));
    // 4x the pixels: a quarter of the rows.
    assert.deepEqual(p.knee("64x64", 32), { rows: 4, ms: 17, source: "extrapolated", exploring: false });
    assert.equal(p.knee("512x512", 32)!.rows, 1, "at least one row");
  });

  it("fixed sizes are never learned, and learn: false freezes the rest", () => {
    const p = new UnetProfile({ fixed: { "64x64": { fixedMs: 1, perRowMs: 1 } }, learn: false });
    p.observe("64x64", 1, 100);
    p.observe("32x32", 1, 100);
    assert.equal(p.estimate("64x64", 1), 2);
    assert.equal(p.estimate("32x32", 4), 2, "32x32 priced from 64x64: 4 rows are one 64x64 row");
    assert.deepEqual(p.snapshot(32).map((s) => [s.size, s.calls.length]), [["64x64", 0]]);
  });
});
