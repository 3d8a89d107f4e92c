/**
 * Finds the code blocks of a Markdown file that a user would paste (TypeScript/JavaScript and shell), for
 * test/docs/verbatim.test.ts. A block that is not meant to run says so, with a reason, in an HTML comment
 * on the line before its fence (blank lines between are allowed):
 *
 *     <!-- not-run: starts a server that runs until stopped -->
 *     ```sh
 *     omni-diffusion serve --port 8000
 *     ```
 *
 * A block whose first line is a file-name comment (`// my-executor.ts`, `# setup.sh`) is a file the
 * reader saves under that name; later blocks of the same document may import or run it.
 */

/** Fence languages whose blocks a user pastes and runs. Others (text, json, http, diagrams) are not code to run. */
export const RUNNABLE_LANGS: Record<string, "ts" | "sh"> = {
  ts: "ts",
  typescript: "ts",
  mts: "ts",
  js: "ts",
  javascript: "ts",
  mjs: "ts",
  sh: "sh",
  bash: "sh",
  shell: "sh",
  zsh: "sh",
};

export interface CodeBlock {
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  kind: "ts" | "sh";
  code: string;
  /** Why the block is not run, from its `<!-- not-run: reason -->` marker; undefined when it runs. */
  notRun?: string;
  /** Set when the marker is malformed (`not-run` without a reason): the block is reported, not skipped. */
  markerError?: string;
  /** File name from a first-line `// name.ts` / `# name.sh` comment. */
  fileName?: string;
}

const FENCE = /^(\s*)(`{3,}|~{3,})\s*([\w+-]*)/;
const MARKER = /^<!--\s*not-run\b\s*(:?)\s*(.*?)\s*-->\s*$/;
const FILE_NAME = /^(?:\/\/|#)\s*([\w./-]+\.(?:ts|mts|js|mjs|sh))\s*$/;

/** Every runnable-language block of `markdown`, in order, with its not-run marker and file name. */
export function extractCodeBlocks(markdown: string): CodeBlock[] {
  const lines = markdown.split("\n");
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]!);
    if (!open) continue;
    const [, indent, fence, lang] = open;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const l = lines[j]!;
      if (l.trim().startsWith(fence!) && l.trim().replace(/[`~]/g, "") === "") break;
      body.push(l.startsWith(indent!) ? l.slice(indent!.length) : l);
    }
    const kind = RUNNABLE_LANGS[lang!.toLowerCase()];
    if (kind) {
      const block: CodeBlock = { line: i + 1, lang: lang!, kind, code: body.join("\n") + "\n" };
      let k = i - 1;
      while (k >= 0 && lines[k]!.trim() === "") k--;
      const marker = k >= 0 ? MARKER.exec(lines[k]!.trim()) : null;
      if (marker) {
        if (marker[1] === ":" && marker[2]) block.notRun = marker[2];
        else block.markerError = `line ${k + 1}: a not-run marker needs a reason: <!-- not-run: why -->`;
      }
      const named = FILE_NAME.exec(body[0]?.trim() ?? "");
      if (named) block.fileName = named[1];
      blocks.push(block);
    }
    i = j;
  }
  return blocks;
}
