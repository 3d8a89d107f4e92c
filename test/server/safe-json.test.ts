/** The shared safe JSON parser every server entry point uses (issue 9 finding 8). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ValidationError } from "../../src/errors/omni-error.js";
import { exceedsJsonDepth, parseJsonSafely } from "../../src/server/shared/safe-json.js";

test("depth counts arrays and objects, not brackets inside strings or escaped quotes", () => {
  assert.equal(exceedsJsonDepth('{"a": [[1]]}', 3), false);
  assert.equal(exceedsJsonDepth('{"a": [[[1]]]}', 3), true);
  assert.equal(exceedsJsonDepth(JSON.stringify({ s: "[[[[[[{{{{" }), 1), false);
  assert.equal(exceedsJsonDepth(JSON.stringify({ s: 'a\\"[[[[' }), 1), false);
  assert.equal(exceedsJsonDepth(`${"[".repeat(100_000)}${"]".repeat(100_000)}`, 64), true);
});

test("parses what is valid, refuses the rest with a 4xx ValidationError naming the field", () => {
  assert.deepEqual(parseJsonSafely('{"a": [1, "é"]}'), { a: [1, "é"] });
  const refused: [string, object, number, RegExp][] = [
    ["[".repeat(5_000) + "]".repeat(5_000), {}, 400, /args_json nests arrays\/objects deeper than 64 levels/],
    ["{", {}, 400, /args_json is not valid JSON/],
    ["é", {}, 400, /args_json is not valid JSON/],
    ["  ", {}, 400, /args_json is empty/],
    ['{"__proto__": {"admin": true}}', {}, 400, /__proto__/],
    ['{"constructor": {"prototype": {"admin": true}}}', {}, 400, /constructor\.prototype/],
    ['"' + "x".repeat(100) + '"', { maxBytes: 50 }, 413, /larger than the limit of 50 bytes/],
  ];
  for (const [text, limits, status, message] of refused) {
    assert.throws(
      () => parseJsonSafely(text, { field: "args_json", ...limits }),
      (err: unknown) => err instanceof ValidationError && err.statusCode === status && err.field === "args_json" && message.test(err.message),
      text.slice(0, 40),
    );
  }
  assert.deepEqual(parseJsonSafely('{"constructor": {"name": "x"}}'), { constructor: { name: "x" } }, "a plain constructor key is data");
});
