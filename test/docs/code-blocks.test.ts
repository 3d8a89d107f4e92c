/** The block finder behind test/docs/verbatim.test.ts: which blocks run, and how a skip is declared. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { extractCodeBlocks } from "./code-blocks.js";

const md = [
  "# Title",
  "```ts",
  "// my-file.ts",
  "export const x = 1;",
  "```",
  "<!-- not-run: starts a server -->",
  "",
  "```sh",
  "omni-diffusion serve",
  "```",
  "<!-- not-run -->",
  "```bash",
  "echo hi",
  "```",
  "```json",
  '{"not": "code to run"}',
  "```",
  "- a list item:",
  "  ```js",
  "  console.log(1);",
  "  ```",
  "```",
  "a diagram",
  "```",
].join("\n");

test("finds ts/js/sh blocks with their line, file name and not-run reason; ignores other languages", () => {
  const blocks = extractCodeBlocks(md);
  assert.deepEqual(
    blocks.map((b) => [b.line, b.kind, b.fileName, b.notRun, b.markerError === undefined]),
    [
      [2, "ts", "my-file.ts", undefined, true],
      [8, "sh", undefined, "starts a server", true],
      [12, "sh", undefined, undefined, false],
      [19, "ts", undefined, undefined, true],
    ],
  );
  assert.equal(blocks[0]!.code, "// my-file.ts\nexport const x = 1;\n");
  assert.equal(blocks[3]!.code, "console.log(1);\n", "a fence indented in a list loses its indent");
  assert.match(blocks[2]!.markerError!, /needs a reason/);
});
