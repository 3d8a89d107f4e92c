/**
 * Every package npm installs for this project runs on the Node the README names (Node.js 20, package.json
 * `engines`): one that asks for a later Node makes `npm ci` warn (EBADENGINE) on a newcomer's first command.
 * Was: light-my-request 6.8 (fastify's inject) pulled cookie 2.0.2, `engines: { node: ">=22" }`; package.json
 * overrides light-my-request to 6.6.0, whose cookie 1.x asks for Node >= 18.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { test } from "node:test";
import { PACKAGE_ROOT } from "../../src/core/paths.js";

const semver = createRequire(import.meta.url)("semver") as { intersects(a: string, b: string): boolean; minVersion(r: string): { major: number } | null };

test("every locked package's engines.node admits the Node major package.json names", () => {
  const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { engines: { node: string } };
  const major = semver.minVersion(pkg.engines.node)!.major;
  assert.equal(major, 20, "the README's Node.js 20");
  const lock = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package-lock.json"), "utf8")) as { packages: Record<string, { version?: string; engines?: { node?: string } | string[] }> };
  const refusing = Object.entries(lock.packages)
    .filter(([, p]) => !Array.isArray(p.engines) && typeof p.engines?.node === "string" && !semver.intersects(p.engines.node, `${major}.x`))
    .map(([path, p]) => `${path}@${p.version} wants node ${(p.engines as { node: string }).node}`);
  assert.deepEqual(refusing, [], `npm ci would warn EBADENGINE on Node ${major}`);
});
