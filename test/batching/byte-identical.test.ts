/**
 * Images for fixed seeds are byte-identical to the ones the code made before the single denoise driver
 * (test/fixtures/byte-identical.json, written from the untouched code): under every batching policy,
 * in-process and across the worker-process boundary, and under `none` also when every request arrives
 * at once (`none` admits one request at a time, so none shares a UNet call).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { BATCHING_POLICIES } from "../../src/core/config.js";
import { DiffusionEngine } from "../../src/engine/engine.js";
import { CASES, FIXTURE, hashCases, imageHash } from "./byte-identical-cases.js";

const expected = (JSON.parse(readFileSync(FIXTURE, "utf8")) as { hashes: string[][] }).hashes;

const assertSame = (got: string[][], label: string) => {
  assert.equal(got.length, CASES.length);
  got.forEach((h, i) => assert.deepEqual(h, expected[i], `${label}: request ${i} (${JSON.stringify(CASES[i])}) images changed`));
};

describe("images are byte-identical to the reference fixture", { timeout: 180_000 }, () => {
  for (const batching of BATCHING_POLICIES) {
    it(`${batching}, in-process (uniproc)`, async () => {
      assertSame(await hashCases({ executorClass: "uniproc", batching }), batching);
    });
  }

  it("continuous across the worker-process boundary (multiproc)", async () => {
    assertSame(await hashCases({ numGpus: 1, batching: "continuous" }), "multiproc continuous");
  });

  it("none, with every request submitted at once", async () => {
    const engine = await DiffusionEngine.create({ executorClass: "uniproc", batching: "none", intraOpNumThreads: 1, allowNonNativeSizes: true });
    try {
      const outs = await Promise.all(CASES.map((c) => engine.generate({ width: 32, height: 32, ...c })));
      assertSame(
        outs.map((o) => {
          if (o.error) throw o.error;
          return o.images.map(imageHash);
        }),
        "none, concurrent",
      );
    } finally {
      await engine.close();
    }
  });
});
