import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { SlipwayError } from '../../contract/errors.js';
import type { ControllerConfig } from '../config.js';
import { EXIT, type ExitCode } from '../errors.js';
import type { Output } from '../output.js';
import { openAgentSession } from '../session.js';
import { KEY_PARAM, PAGE_HOSTS, newSecrets } from '../ui/guard.js';
import { buildUiServer } from '../ui/server.js';

export interface UiOptions {
  /** 0: a free port. */
  port: number;
  open: boolean;
  json: boolean;
  env: string | null;
  /** Resolves when the user stops the page (Ctrl-C, SIGTERM). */
  stopped: Promise<void>;
}

/** Pure: the argv that opens a URL in the desktop's browser, per platform. */
export function openCommand(platform: NodeJS.Platform, url: string): string[] {
  if (platform === 'darwin') return ['open', url];
  if (platform === 'win32') return ['rundll32', 'url.dll,FileProtocolHandler', url];
  return ['xdg-open', url];
}

function openBrowser(url: string, out: Output): void {
  const [command, ...args] = openCommand(process.platform, url);
  const child = spawn(command!, args, { stdio: 'ignore', detached: true });
  child.once('error', (error) => out.info(`could not open a browser (${command}: ${error.message}): open the URL above yourself`));
  child.unref();
}

/**
 * `deploy ui [--port N] [--open]`: the status page of the app on 127.0.0.1, served until stopped.
 * One SSH session for the whole run; the page's requests ride it, the token stays in this process.
 */
export async function ui(config: ControllerConfig, options: UiOptions, out: Output): Promise<ExitCode> {
  const session = await openAgentSession(config);
  try {
    const secrets = newSecrets();
    const server = buildUiServer({ agent: session.agent, app: config.app, env: options.env, hostLabel: session.ssh.remoteAddressLabel, secrets });
    try {
      await server.listen({ host: PAGE_HOSTS[0], port: options.port });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE' || (error as NodeJS.ErrnoException).code === 'EACCES') {
        throw new SlipwayError('ui_port_in_use', `cannot serve the page on ${PAGE_HOSTS[0]}:${options.port}: ${(error as NodeJS.ErrnoException).code}`, {
          hint: 'pick another --port, or leave it out for a free one',
        });
      }
      throw error;
    }
    try {
      const { port } = server.server.address() as AddressInfo;
      const url = `http://${PAGE_HOSTS[0]}:${port}/?${KEY_PARAM}=${secrets.sessionKey}`;
      if (options.json) out.data({ app: config.app, env: options.env, url });
      else {
        out.info(`${config.app}${options.env ? ` (${options.env})` : ''} on ${session.ssh.remoteAddressLabel}: the page is served on ${PAGE_HOSTS[0]}:${port} until Ctrl-C`);
        out.info('open this URL (its key is this run\'s: keep it to yourself, it acts with your SSH access):');
        out.data(url);
      }
      if (options.open) openBrowser(url, out);
      const linkLost = new Promise<SlipwayError | undefined>((resolve) => session.ssh.onClose(resolve));
      const ended = await Promise.race([options.stopped.then(() => null), linkLost]);
      if (ended !== null) {
        throw ended ?? new SlipwayError('ssh_connection_lost', `the SSH link to ${session.ssh.remoteAddressLabel} closed: the page stopped`, {
          hint: 'run deploy ui again',
        });
      }
      out.info('page stopped');
      return EXIT.ok;
    } finally {
      await server.close();
    }
  } finally {
    await session.close();
  }
}
