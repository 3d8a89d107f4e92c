import assert from "node:assert/strict";
import { test } from "node:test";
import { ImageStore } from "../../src/server/app/image-store.js";
import { previewInterval } from "../../src/server/app/generation-flow.js";

/** A clock the test moves by hand. */
function fakeClock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

test("a stored image is served until its TTL passes, then it is gone", () => {
  const clock = fakeClock();
  const store = new ImageStore({ ttlMs: 60_000, maxBytes: 1_000, now: clock.now });
  const { id, expiresAt } = store.put(Buffer.from("png-1"));
  assert.match(id, /^img_[A-Za-z0-9_-]{22}$/, "128 random bits, URL-safe");
  assert.equal(expiresAt, clock.now() + 60_000);
  clock.advance(59_999);
  assert.equal(store.get(id)?.png.toString(), "png-1");
  clock.advance(1);
  assert.equal(store.get(id), null);
  assert.equal(store.size, 0);
  assert.equal(store.bytes, 0);
});

test("over the byte budget the oldest images are dropped first", () => {
  const clock = fakeClock();
  const store = new ImageStore({ ttlMs: 60_000, maxBytes: 10, now: clock.now });
  const a = store.put(Buffer.alloc(4));
  clock.advance(1);
  const b = store.put(Buffer.alloc(4));
  const c = store.put(Buffer.alloc(4));
  assert.equal(store.get(a.id), null, "the oldest went to make room");
  assert.ok(store.get(b.id) && store.get(c.id));
  assert.equal(store.bytes, 8);
  assert.notEqual(b.id, c.id);
});

test("partial_images k spreads k previews evenly before the final step", () => {
  const previewSteps = (steps: number, k: number) => {
    const every = previewInterval(steps, k);
    return Array.from({ length: steps - 1 }, (_, i) => i + 1).filter((s) => every > 0 && s % every === 0);
  };
  assert.deepEqual(previewSteps(20, 3), [5, 10, 15]);
  assert.deepEqual(previewSteps(10, 3), [3, 6, 9]);
  assert.deepEqual(previewSteps(6, 2), [2, 4]);
  assert.deepEqual(previewSteps(4, 3), [1, 2, 3]);
  assert.deepEqual(previewSteps(2, 3), [1], "fewer steps than partials: as many as there are");
  assert.deepEqual(previewSteps(20, 0), []);
});
