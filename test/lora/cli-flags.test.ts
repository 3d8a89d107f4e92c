/** `generate --lora name[:scale]` (repeatable), parsed by commander through loraArg. */
import assert from "node:assert/strict";
import { it } from "node:test";
import { Command } from "commander";
import { loraArg } from "../../src/cli/lora-flags.js";

it("--lora takes name[:scale], repeatable, scale 1 by default; a bad scale names the value", () => {
  const cmd = new Command().exitOverride().configureOutput({ writeErr: () => {} }).option("--lora <name[:scale]>", "", loraArg);
  cmd.parse(["--lora", "ink:0.8", "--lora", "paper", "--lora", "dir:sub:-0.5"], { from: "user" });
  assert.deepEqual(cmd.opts().lora, [{ name: "ink", scale: 0.8 }, { name: "paper", scale: 1 }, { name: "dir:sub", scale: -0.5 }]);
  assert.throws(() => new Command().exitOverride().configureOutput({ writeErr: () => {} }).option("--lora <x>", "", loraArg).parse(["--lora", "ink:lots"], { from: "user" }), /scale of "ink:lots" is not a number/);
});
