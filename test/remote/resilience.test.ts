/** The shared resilience layer on its own: policies with fake transports, fake clocks for the breaker, and a fake HTTP server. */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it, mock } from "node:test";
import { parseConfig } from "../../src/core/config.js";
import { AbortedError, QueueFullError, TimeoutError, TransportError, UnhealthyError, ValidationError } from "../../src/errors/omni-error.js";
import { HttpDiffusionExecutor } from "../../src/executors/http-executor.js";
import { Endpoint, EndpointPool } from "../../src/policies/endpoint-pool.js";
import { RemotePolicy, type RetryEvent } from "../../src/policies/remote-policy.js";
import { errorFromResponse, parseRetryAfter } from "../../src/protocol/wire.js";

const transient = (url: string) => new TransportError(`${url}: ECONNRESET`, { data: { endpoint: url, errno: "ECONNRESET" } });
const refused = (url: string) => new TransportError(`${url}: ECONNREFUSED`, { data: { endpoint: url, errno: "ECONNREFUSED" } });

/** Settles `p` under mock timers: lets pending callbacks run, then moves the fake clock, until `p` settles. */
async function drive<T>(p: Promise<T>, stepMs = 10): Promise<T> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let i = 0; !settled && i < 100_000; i++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (!settled) mock.timers.tick(stepMs);
  }
  return p;
}

function makePolicy(urls: string[], opts: { retries?: number; threshold?: number; halfOpenAfterMs?: number } = {}) {
  const endpoints = urls.map((u) => new Endpoint(u, u, { threshold: opts.threshold ?? 3, halfOpenAfterMs: opts.halfOpenAfterMs ?? 1_000 }));
  const policy = new RemotePolicy(new EndpointPool(endpoints), { retries: opts.retries ?? 3, backoffInitialMs: 1, backoffMaxMs: 2_000 });
  const events: RetryEvent[] = [];
  policy.onRetry((e) => events.push(e));
  return { policy, endpoints, events };
}

/** A latch: `wait` resolves once `open` is called. */
function latch(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

describe("RemotePolicy", () => {
  it("retries retryable failures, never the others", async () => {
    const { policy } = makePolicy(["a"]);
    let calls = 0;
    const ok = await policy.execute("op", async () => (++calls < 3 ? Promise.reject(transient("a")) : "done"), { timeoutMs: 10_000 });
    assert.equal(ok, "done");
    assert.equal(calls, 3);
    calls = 0;
    await assert.rejects(policy.execute("op", async () => (calls++, Promise.reject(new ValidationError("bad width", { field: "width" }))), { timeoutMs: 10_000 }), ValidationError);
    assert.equal(calls, 1);
  });

  it("fails over: a failed attempt goes to an endpoint the call has not tried", async () => {
    const { policy } = makePolicy(["a", "b", "c"], { threshold: 100 });
    for (let i = 0; i < 6; i++) {
      const tried: string[] = [];
      await policy.execute("op", async ({ endpoint }) => {
        tried.push(endpoint.url);
        if (tried.length < 3) throw transient(endpoint.url);
      }, { timeoutMs: 10_000 });
      assert.equal(new Set(tried).size, 3, `three attempts on three endpoints, got ${tried}`);
    }
  });

  it("balances by least outstanding requests", async () => {
    const { policy, endpoints } = makePolicy(["a", "b"]);
    const gate = latch();
    const all = Array.from({ length: 10 }, () => policy.execute("op", () => gate.wait, { timeoutMs: 10_000 }));
    assert.deepEqual(endpoints.map((e) => e.outstanding), [5, 5]);
    gate.open();
    await Promise.all(all);
    assert.deepEqual(endpoints.map((e) => e.outstanding), [0, 0]);
    assert.deepEqual(endpoints.map((e) => e.metrics().successes), [5, 5]);
  });

  it("opens a circuit after consecutive endpoint failures, skips it, and closes it after a good half-open probe", async () => {
    mock.timers.enable({ apis: ["Date"], now: 1_000_000 });
    try {
      const { policy, endpoints } = makePolicy(["a", "b"], { retries: 1, threshold: 2, halfOpenAfterMs: 5_000 });
      const [a, b] = endpoints as [Endpoint<string>, Endpoint<string>];
      let aDown = true;
      const call = () => policy.execute("op", async ({ endpoint }) => {
        if (endpoint === a && aDown) throw transient("a");
        return endpoint.url;
      }, { timeoutMs: 10_000 });
      for (let i = 0; i < 4; i++) assert.equal(await call(), "b", "every call still succeeds (failover)");
      assert.equal(a.state, "open");
      assert.equal(a.metrics().breakerOpens, 1);
      const attemptsOnA = a.metrics().attempts;
      for (let i = 0; i < 4; i++) await call();
      assert.equal(a.metrics().attempts, attemptsOnA, "an open circuit gets no attempts");
      assert.equal(a.available, false);
      aDown = false;
      mock.timers.tick(5_000);
      assert.equal(a.available, true, "the probe is due");
      const results = new Set<string>();
      for (let i = 0; i < 3; i++) results.add(await call());
      assert.ok(results.has("a"), "the half-open probe went to a");
      assert.equal(a.state, "closed");
      assert.equal(b.state, "closed");
    } finally {
      mock.timers.reset();
    }
  });

  it("honours Retry-After when no other endpoint can take the retry, not when one can", async () => {
    const busy = (url: string) => new QueueFullError("busy", { data: { endpoint: url, retryAfterMs: 700 } });
    const one = makePolicy(["a"]);
    let n = 0;
    await one.policy.execute("op", async ({ endpoint }) => {
      if (n++ === 0) throw busy(endpoint.url);
    }, { timeoutMs: 10_000 });
    assert.equal(one.events.length, 1);
    assert.ok(one.events[0]!.delayMs >= 700, `waited ${one.events[0]!.delayMs}ms`);

    const two = makePolicy(["a", "b"]);
    n = 0;
    await two.policy.execute("op", async ({ endpoint }) => {
      if (n++ === 0) throw busy(endpoint.url);
    }, { timeoutMs: 10_000 });
    assert.ok(two.events[0]!.delayMs < 700, `failover need not wait out the busy server's Retry-After (${two.events[0]!.delayMs}ms)`);
  });

  it("never retries past the call's budget, and names the last endpoint failure, not the breaker's refusal", async () => {
    // Fake clock: the breaker opens after three failures (t = 0, 60, 120 ms); the budget ends at 1 000 ms
    // while the open circuit refuses. Before, the TimeoutError named "circuit open" (and, on the wall
    // clock, did so in one run of four even with a 150 ms budget).
    mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 });
    try {
      const { policy } = makePolicy(["a"], { retries: 20, threshold: 3, halfOpenAfterMs: 5_000 });
      let calls = 0;
      const run = policy.execute("generate", async () => {
        calls++;
        throw new UnhealthyError("a: loading", { data: { endpoint: "a", retryAfterMs: 60 } });
      }, { timeoutMs: 1_000 });
      await assert.rejects(drive(run), (err: unknown) => {
        assert.ok(err instanceof TimeoutError, `TimeoutError, got ${(err as Error).name}`);
        assert.match(err.message, /last error: a: loading/);
        assert.doesNotMatch(err.message, /circuit/);
        assert.ok(err.cause instanceof UnhealthyError);
        return true;
      });
      assert.equal(calls, 3, "three attempts, then the open circuit until the budget ran out");
    } finally {
      mock.timers.reset();
    }
  });

  it("out of retries on an open circuit, the call throws the endpoint's own last failure", async () => {
    mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 });
    try {
      const { policy, events } = makePolicy(["a"], { retries: 3, threshold: 1, halfOpenAfterMs: 600_000 });
      const run = policy.execute("op", async () => Promise.reject(refused("a")), { timeoutMs: 600_000 });
      await assert.rejects(drive(run), (err: unknown) => err instanceof TransportError && err.data.errno === "ECONNREFUSED" && !/circuit/.test(err.message));
      assert.deepEqual(events.map((e) => e.reason), ["ECONNREFUSED", "circuit open", "circuit open"]);
    } finally {
      mock.timers.reset();
    }
  });

  it("stops retrying once every endpoint has refused connections for refusedTimeoutMs, naming each", async () => {
    mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 });
    try {
      const endpoints = ["a", "b"].map((u) => new Endpoint(u, u, { threshold: 1_000, halfOpenAfterMs: 1_000 }));
      const policy = new RemotePolicy(new EndpointPool(endpoints), { retries: 20, backoffInitialMs: 50, backoffMaxMs: 100, refusedTimeoutMs: 500 });
      let calls = 0;
      const run = policy.execute("op", async ({ endpoint }) => {
        calls++;
        throw refused(endpoint.url);
      }, { timeoutMs: 600_000 });
      await assert.rejects(drive(run), (err: unknown) => {
        assert.ok(err instanceof TransportError, `TransportError, got ${(err as Error).name}: ${(err as Error).message}`);
        assert.equal(err.retryable, false);
        assert.equal(err.data.unreachable, true);
        assert.match(err.message, /a: ECONNREFUSED.*b: ECONNREFUSED|b: ECONNREFUSED.*a: ECONNREFUSED/);
        return true;
      });
      assert.ok(calls > 2 && calls < 21, `retried while within refusedTimeoutMs, then stopped (${calls} attempts)`);
    } finally {
      mock.timers.reset();
    }
  });

  it("stops at once when the caller aborts", async () => {
    const { policy } = makePolicy(["a"], { retries: 20 });
    const ctl = new AbortController();
    let calls = 0;
    await assert.rejects(
      policy.execute("op", async () => {
        if (++calls === 2) ctl.abort();
        throw transient("a");
      }, { timeoutMs: 10_000, signal: ctl.signal }),
      AbortedError,
    );
    assert.equal(calls, 2);
  });
});

describe("HTTP failures as OmniErrors", () => {
  it("rebuilds the server's error, retryable where the status is", () => {
    const unhealthy = errorFromResponse(503, { error: { name: "UnhealthyError", code: "OMNI_ERR_UNHEALTHY", message: "loading" } }, "http://w", "1");
    assert.ok(unhealthy instanceof UnhealthyError);
    assert.equal(unhealthy.retryable, true);
    assert.equal(unhealthy.data.retryAfterMs, 1000);
    const internal = errorFromResponse(500, { error: { name: "OmniError", code: "OMNI_ERR_INTERNAL", message: "boom" } }, "http://w");
    assert.ok(internal instanceof TransportError && internal.retryable);
    const bad = errorFromResponse(400, { error: { name: "ValidationError", code: "OMNI_ERR_VALIDATION", message: "x", data: { field: "width" } } }, "http://w");
    assert.ok(bad instanceof ValidationError && !bad.retryable && bad.field === "width");
    const openai = errorFromResponse(400, { error: { message: "Invalid size", type: "invalid_request_error", param: "size" } }, "http://w");
    assert.ok(openai instanceof ValidationError && openai.field === "size");
    const throttled = errorFromResponse(429, "slow down", "http://w", "2");
    assert.ok(throttled instanceof QueueFullError && throttled.retryable && throttled.data.retryAfterMs === 2000);
    const proxy = errorFromResponse(502, "<html>bad gateway</html>", "http://w");
    assert.ok(proxy instanceof TransportError && proxy.retryable);
    assert.equal(errorFromResponse(404, "nope", "http://w").retryable, false);
    assert.equal(parseRetryAfter(new Date(Date.now() + 60_000).toUTCString())! > 50_000, true);
  });

  it("an HTTP executor waits out a 429's Retry-After on its only endpoint, and fails over from a refused one", async () => {
    let rpcCalls = 0;
    const fake: Server = createServer((req, res) => {
      res.setHeader("content-type", "application/json");
      if (req.url === "/health") return res.end(JSON.stringify({ status: "ok" }));
      if (rpcCalls++ === 0) {
        res.writeHead(429, { "retry-after": "1" });
        return res.end(JSON.stringify({ error: { name: "QueueFullError", code: "OMNI_ERR_QUEUE_FULL", message: "queue full" } }));
      }
      res.end(JSON.stringify({ result: [{ rank: 0, pid: 1, time: 0 }] }));
    });
    await new Promise<void>((resolve) => fake.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
    // A port nobody listens on: connection refused.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const dead = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise<void>((resolve) => closed.close(() => resolve()));

    const ex = new HttpDiffusionExecutor(parseConfig({ executorOptions: { endpoints: [url], backoffInitialMs: 1 } }));
    const delays: number[] = [];
    ex.onRetry((e) => delays.push(e.delayMs));
    await ex.init();
    const both = new HttpDiffusionExecutor(parseConfig({ executorOptions: { endpoints: [dead, url], backoffInitialMs: 1 } }));
    try {
      assert.deepEqual(await ex.collectiveRpc("ping"), [{ rank: 0, pid: 1, time: 0 }]);
      assert.deepEqual(delays, [1000]);
      await both.init();
      for (let i = 0; i < 4; i++) await both.collectiveRpc("ping");
      const [d, u] = both.endpointMetrics();
      assert.equal(d!.successes, 0);
      assert.ok(d!.failures >= 1);
      assert.match(d!.lastError!, /ECONNREFUSED/);
      assert.equal(u!.successes, 4 + 1, "four calls and the start-up probe, all on the live endpoint");
      assert.deepEqual(both.endpointStates().map((s) => s.endpoint), [dead, url]);
    } finally {
      await ex.close();
      await both.close();
      await new Promise<void>((resolve) => fake.close(() => resolve()));
    }
  });
});
