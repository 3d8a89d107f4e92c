/**
 * An endpoint's circuit breaker on an injected clock (src/policies/endpoint-pool.ts): when an open circuit
 * lets its half-open probe through is decided by the test moving a manual clock, never by waiting.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { TransportError, ValidationError } from "../../src/errors/omni-error.js";
import { Endpoint, EndpointPool } from "../../src/policies/endpoint-pool.js";
import { ManualClock } from "../helpers/manual-clock.js";

const HALF_OPEN_MS = 60_000;
/** A failure that counts against the endpoint (retryable, not a timeout or an abort). */
const reset = () => new TransportError("connection reset", { retryable: true });

/** An endpoint on a manual clock whose circuit opened after `threshold` failures. */
async function openEndpoint(threshold = 2): Promise<{ ep: Endpoint<null>; clock: ManualClock }> {
  const clock = new ManualClock();
  const ep = new Endpoint("http://a", null, { threshold, halfOpenAfterMs: HALF_OPEN_MS, clock });
  for (let i = 0; i < threshold; i++) {
    await assert.rejects(
      ep.run(() => Promise.reject(reset()), false),
      TransportError,
    );
  }
  assert.equal(ep.state, "open");
  return { ep, clock };
}

/** Runs one attempt and says whether it reached `fn` (false: the open circuit refused it). */
async function reaches(ep: Endpoint<null>, fn: () => Promise<void> = async () => undefined): Promise<boolean> {
  let reached = false;
  try {
    await ep.run(async () => {
      reached = true;
      await fn();
    }, false);
  } catch (err) {
    if (!reached) assert.equal((err as TransportError).data.circuitOpen, true, "a refusal says the circuit is open");
  }
  return reached;
}

describe("Endpoint circuit on an injected clock", () => {
  it("stays open, refusing every call, until its clock has moved halfOpenAfterMs", async () => {
    const { ep, clock } = await openEndpoint();
    assert.equal(ep.metrics().probeDueInMs, HALF_OPEN_MS);
    assert.equal(ep.available, false);
    assert.equal(await reaches(ep), false);

    clock.advance(HALF_OPEN_MS - 1);
    assert.equal(ep.metrics().probeDueInMs, 1);
    assert.equal(ep.available, false);
    assert.equal(await reaches(ep), false, "1 ms before the probe is due the breaker still refuses");

    clock.advance(1);
    assert.equal(ep.metrics().probeDueInMs, 0);
    assert.equal(ep.available, true);
    assert.equal(await reaches(ep), true, "the probe goes through the moment the clock says it is due");
    assert.equal(ep.state, "closed", "a probe that succeeds closes the circuit");
    assert.equal(await reaches(ep), true);
  });

  it("a failed probe opens the circuit again for another full wait, timed from the probe's failure", async () => {
    const { ep, clock } = await openEndpoint();
    clock.advance(HALF_OPEN_MS);
    assert.equal(await reaches(ep, () => Promise.reject(reset())), true, "the probe ran");
    assert.equal(ep.state, "open");
    assert.equal(ep.metrics().breakerOpens, 2);
    assert.equal(ep.metrics().probeDueInMs, HALF_OPEN_MS);
    assert.equal(await reaches(ep), false);
    clock.advance(HALF_OPEN_MS);
    assert.equal(await reaches(ep), true);
    assert.equal(ep.state, "closed");
  });

  it("lets one probe through at a time: while it runs the endpoint is half-open and unavailable", async () => {
    const { ep, clock } = await openEndpoint();
    clock.advance(HALF_OPEN_MS);
    let finishProbe!: () => void;
    const gate = new Promise<void>((resolve) => (finishProbe = resolve));
    let entered!: () => void;
    const inProbe = new Promise<void>((resolve) => (entered = resolve));
    const probe = reaches(ep, () => (entered(), gate));
    await inProbe;
    assert.equal(ep.state, "half-open");
    assert.equal(ep.available, false);
    finishProbe();
    assert.equal(await probe, true);
    assert.equal(ep.state, "closed");
  });

  it("per-request failures (not retryable) never open it, whatever the clock", async () => {
    const clock = new ManualClock();
    const ep = new Endpoint("http://a", null, { threshold: 1, halfOpenAfterMs: HALF_OPEN_MS, clock });
    for (let i = 0; i < 3; i++) await assert.rejects(ep.run(() => Promise.reject(new ValidationError("bad prompt", { field: "prompt" })), false), ValidationError);
    assert.equal(ep.state, "closed");
  });
});

describe("EndpointPool on an injected clock", () => {
  it("skips an open endpoint until its probe is due, and says how long to wait when every circuit is open", async () => {
    const clock = new ManualClock();
    const [a, b] = ["http://a", "http://b"].map((u) => new Endpoint(u, null, { threshold: 1, halfOpenAfterMs: HALF_OPEN_MS, clock })) as [Endpoint<null>, Endpoint<null>];
    const pool = new EndpointPool([a, b]);
    await assert.rejects(a.run(() => Promise.reject(reset()), false));
    for (let i = 0; i < 4; i++) assert.equal(pool.pick(), b, "only b while a's circuit is open");
    clock.advance(1_000);
    await assert.rejects(b.run(() => Promise.reject(reset()), false));
    assert.throws(
      () => pool.pick(),
      (err: TransportError) => err.data.circuitOpen === true && err.data.retryAfterMs === HALF_OPEN_MS - 1_000,
      "every circuit open: retry when the first probe is due",
    );
    clock.advance(HALF_OPEN_MS - 1_000);
    assert.equal(pool.pick(), a, "a's probe is due first");
  });
});
