#!/usr/bin/env node
import { Command } from 'commander';
import { DEFAULT_CONFIG_PATH, loadAgentConfig } from './config.js';
import { createLogger } from './logger.js';
import { startAgent } from './agent.js';
import { SlipwayError, errorMessage } from '../contract/errors.js';
import { VERSION } from '../contract/version.js';
import { rootWarning } from './run-as.js';

// The agent's single error boundary: the only place that prints a fatal error and exits.
async function main(argv: string[]): Promise<void> {
  const program = new Command('slipway-agent')
    .description('Slipway on-box agent: receives releases, runs blue/green slots under PM2, switches nginx')
    .version(VERSION)
    .option('-c, --config <file>', 'agent config file', process.env.SLIPWAY_AGENT_CONFIG ?? DEFAULT_CONFIG_PATH);

  program.command('run', { isDefault: true }).description('start the agent API').action(async () => {
    const config = loadAgentConfig(program.opts<{ config: string }>().config);
    const logger = createLogger();
    const asRoot = rootWarning(process.getuid?.());
    if (asRoot) {
      logger.warn({ uid: 0 }, asRoot);
      process.stderr.write(`slipway-agent: WARNING: ${asRoot}\n`);
    }
    // Stray errors of library sockets: PM2's RPC client reports a dead daemon's socket as an 'error'
    // event nobody can listen to, or as a rejection of a call already abandoned. The adapter has
    // already turned the death into pm2_daemon_down and the watchdog restarts the daemon, so such a
    // network error is logged and the agent goes on; anything else is a bug and ends the process
    // (PM2 restarts the agent and crash recovery resolves what it left).
    process.on('unhandledRejection', (reason) => {
      logger.error({ err: reason }, 'unhandled rejection (ignored: the call it belonged to has already failed or been abandoned)');
    });
    process.on('uncaughtException', (error) => {
      if (isStraySocketError(error)) {
        logger.error({ err: error }, 'stray socket error of a library (ignored)');
        return;
      }
      logger.fatal({ err: error }, 'uncaught exception');
      process.exit(70);
    });
    const agent = await startAgent(config, logger);
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutting down');
      agent.close().then(() => process.exit(0), (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });

  program.command('check-config').description('validate the agent config and exit').action(() => {
    const file = program.opts<{ config: string }>().config;
    loadAgentConfig(file);
    process.stdout.write(`${file}: ok\n`);
  });

  await program.parseAsync(argv);
}

main(process.argv).catch((error: unknown) => {
  if (error instanceof SlipwayError) {
    process.stderr.write(`slipway-agent: ${error.message}\n`);
    for (const detail of error.details ?? []) process.stderr.write(`  - ${detail}\n`);
    if (error.hint) process.stderr.write(`hint: ${error.hint}\n`);
    process.exit(2);
  }
  process.stderr.write(`slipway-agent: internal error: ${errorMessage(error)}\n${error instanceof Error ? error.stack ?? '' : ''}\n`);
  process.exit(70);
});

/** A connection-level error (the peer went away), as a dead PM2 daemon's RPC socket raises. */
function isStraySocketError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'ENOENT';
}
