/**
 * The fuzz verdict (http-oracle.ts): a 504 TimeoutError answering a request that carried a 1 ms deadline is
 * the right answer, not a finding (bench/fuzz.ts --count 2000 exited 1 on one); every other 5xx still is.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { OmniError, TimeoutError } from "../../src/errors/omni-error.js";
import { errorBody } from "../../src/protocol/wire.js";
import { makeRng } from "./hostile.js";
import { carriedDeadline, httpAnswerProblem } from "./http-oracle.js";
import { hostileHttpRequest, workerRoutes } from "./runner.js";

/** A raw HTTP answer with the worker's error body for `err`. */
const answer = (status: number, err: TimeoutError | OmniError) => ({ text: `HTTP/1.1 ${status} x\r\ncontent-type: application/json\r\n\r\n${JSON.stringify(errorBody(err))}`, hung: false });
const HANG = { hangMs: 60_000 };

describe("fuzz oracle", () => {
  it("the deadlines the hostile requests carry are read as the worker reads them", () => {
    assert.equal(carriedDeadline([["x-omni-timeout-ms", "1"]]), 1);
    assert.equal(carriedDeadline([["X-Amzn-SageMaker-Custom-Attributes", "timeout_ms=1"]]), 1);
    for (const bad of ["0", "-5", "soon", "99999999999", "1.5", ""]) assert.equal(carriedDeadline([["x-omni-timeout-ms", bad]]), undefined, bad);
    for (const bad of ["timeout_ms=abc", "=,=,", "timeout_ms=50000000000"]) assert.equal(carriedDeadline([["X-Amzn-SageMaker-Custom-Attributes", bad]]), undefined, bad);
  });

  it("a 504 TimeoutError to a request with a 1 ms deadline is no finding", () => {
    assert.equal(httpAnswerProblem(answer(504, new TimeoutError("request req-1 passed its deadline")), { deadlineMs: 1 }, HANG), null);
  });

  it("a 504 without a deadline of the request's own, a 500, or an internal error still is one", () => {
    assert.equal(httpAnswerProblem(answer(504, new TimeoutError("x")), {}, HANG), "status 504");
    assert.equal(httpAnswerProblem(answer(504, new TimeoutError("x")), { deadlineMs: 120_000 }, HANG), "status 504", "a deadline longer than the hang guard does not excuse it");
    assert.equal(httpAnswerProblem(answer(504, new OmniError("x")), { deadlineMs: 1 }, HANG), "status 504", "a 504 that is not a TimeoutError");
    assert.equal(httpAnswerProblem(answer(500, new OmniError("x")), { deadlineMs: 1 }, HANG), "status 500");
    assert.equal(httpAnswerProblem({ text: "", hung: true }, { deadlineMs: 1 }, HANG), "no answer within 60000 ms");
  });

  it("the hostile generator reports the deadline it put on a request", () => {
    const rng = makeRng(7);
    const target = { name: "worker", url: "http://127.0.0.1:1", key: "k", maxBodyBytes: 4096, routes: workerRoutes() };
    let seen = 0;
    for (let i = 0; i < 2_000 && seen < 3; i++) {
      const r = hostileHttpRequest(rng, target);
      const header = /x-omni-timeout-ms: ([^;\]]*)/.exec(r.summary)?.[1];
      if (header === "1") {
        assert.equal(r.deadlineMs, 1, r.summary);
        seen++;
      }
    }
    assert.ok(seen > 0, "some request carried x-omni-timeout-ms: 1");
  });
});
