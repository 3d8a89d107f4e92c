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
  .option("--debug", "print the stack and cause of an error (or set OMNI_DIFFUSION_DEBUG=1)")
  .showHelpAfterError();
addGenerateCommand(program);
addInfoCommand(program);
addPullCommand(program);
addServeCommand(program);
addWorkerCommand(program);

/** Read before parsing too: an error can come from parsing itself, before commander has set the option. */
const debug = (): boolean =>
  Boolean(program.opts().debug) || process.argv.includes("--debug") || /^(1|true|yes)$/i.test(process.env.OMNI_DIFFUSION_DEBUG ?? "");

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  // A known error is the user's to fix: one line naming it and its code. Its stack only helps a bug
  // report, so it is printed on request; an unknown error keeps its stack, since that is a bug.
  if (err instanceof OmniError) {
    console.error(`omni-diffusion: ${err.message} [${err.code}]`);
    if (debug()) console.error(err.stack, ...(err.cause !== undefined ? ["\ncaused by:", err.cause] : []));
  } else console.error(err);
  process.exitCode = 1;
}
