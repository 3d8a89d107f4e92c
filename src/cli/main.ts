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
  // A usage error (bad flag value, unknown option, missing argument) is one line in the shape of every
  // other error, not commander's "error: ..." followed by the whole help; subcommands inherit this.
  .configureOutput({ outputError: (str, write) => write(str.replace(/^error: /, "omni-diffusion: ").replace(/\n\(Did you mean (.*)\?\)/, " (did you mean $1?)")) });
addGenerateCommand(program);
addInfoCommand(program);
addPullCommand(program);
addServeCommand(program);
addWorkerCommand(program);

/** Points each command's usage errors at its own help, in one line after the error. */
function pointAtHelp(cmd: Command, path: string): void {
  cmd.showHelpAfterError(`(see '${path} --help')`);
  for (const sub of cmd.commands) pointAtHelp(sub, `${path} ${sub.name()}`);
}
pointAtHelp(program, "omni-diffusion");

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
