import { Command, CommanderError } from "commander";
import { OmniError } from "../errors/omni-error.js";
import { addGenerateCommand } from "./generate-command.js";
import { addInfoCommand } from "./info-command.js";
import { addPullCommand } from "./pull-command.js";
import { addServeCommand } from "./serve-command.js";
import { addWorkerCommand } from "./worker-command.js";

const program = new Command("omni-diffusion")
  .description("diffusion inference engine for Node.js with pluggable executors")
  .version("0.1.0")
  .showHelpAfterError();
addGenerateCommand(program);
addInfoCommand(program);
addPullCommand(program);
addServeCommand(program);
addWorkerCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  // Known errors print as one clear line; anything else keeps its stack for a bug report.
  if (err instanceof OmniError) console.error(`omni-diffusion: ${err.message} [${err.code}]`);
  else console.error(err);
  process.exitCode = 1;
}
