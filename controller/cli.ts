import path from 'node:path';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { SlipwayError } from '../agent/shared/errors.js';
import { isSlot, type Slot } from '../agent/shared/names.js';
import { VERSION } from '../agent/shared/version.js';
import { DEFAULT_CONFIG_FILE, loadControllerConfig } from './config.js';
import { EXIT, exitCodeFor, type ExitCode } from './errors.js';
import { HumanOutput, JsonOutput, type Output } from './output.js';
import { push } from './commands/push.js';
import { switchSlot } from './commands/switch.js';
import { status } from './commands/status.js';

interface GlobalOptions { config?: string; json?: boolean }

function parseSlot(value: string): Slot {
  if (!isSlot(value)) throw new InvalidArgumentError('must be "blue" or "green"');
  return value;
}

/** Declares the commands; each action is one call into controller/commands. */
function buildProgram(run: (action: (out: Output, opts: GlobalOptions) => Promise<ExitCode>) => Promise<void>): Command {
  const program = new Command('deploy')
    .description('Slipway: blue/green deploys of a Node app to your own server over SSH')
    .version(VERSION)
    .option('-c, --config <file>', `controller config (default: ./${DEFAULT_CONFIG_FILE})`)
    .option('--json', 'machine-readable output: one JSON object per line')
    .exitOverride()
    .showHelpAfterError();

  const config = (opts: GlobalOptions) => loadControllerConfig(path.resolve(opts.config ?? DEFAULT_CONFIG_FILE));

  program.command('push')
    .description('pack the commit, upload it unless the host has it, start it in the standby slot, health-check it, switch nginx')
    .option('--slot <slot>', 'slot to deploy into (default: the one not live)', parseSlot)
    .option('--sha <ref>', 'commit to deploy', 'HEAD')
    .option('--allow-dirty', 'deploy uncommitted changes of tracked files, tagged as a dirty release', false)
    .action((opts: { slot?: Slot; sha: string; allowDirty: boolean }) => run((out, global) =>
      push(config(global), { ...opts, cwd: process.cwd() }, out)));

  program.command('switch')
    .description('point nginx at the other, already-running slot')
    .argument('<slot>', 'blue or green', parseSlot)
    .action((slot: Slot) => run((out, global) => switchSlot(config(global), slot, out)));

  program.command('status')
    .description('show slots, the live slot, processes, health and releases')
    .action(() => run((out, global) => status(config(global), global.json ?? false, out)));

  return program;
}

// The controller's single error boundary: commands throw, this prints and picks the exit code.
export async function main(argv: string[], io = { stdout: process.stdout, stderr: process.stderr }): Promise<ExitCode> {
  let exitCode: ExitCode = EXIT.ok;
  let out: Output = new HumanOutput({ ...io, isTTY: Boolean((io.stderr as NodeJS.WriteStream).isTTY) });
  const program = buildProgram(async (action) => {
    const global = program.opts<GlobalOptions>();
    if (global.json) out = new JsonOutput({ ...io, isTTY: false });
    try {
      exitCode = await action(out, global);
    } catch (error) {
      out.error(error instanceof Error ? error : new Error(String(error)));
      exitCode = exitCodeFor(error);
      if (!(error instanceof SlipwayError) && error instanceof Error && error.stack) io.stderr.write(`${error.stack}\n`);
    }
  });
  program.configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    throw error;
  }
  return exitCode;
}
