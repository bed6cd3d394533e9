import { readFile } from 'node:fs/promises';
import { SlipwayError } from '../../contract/errors.js';
import { packageRoot } from '../../contract/version.js';
import type { Target } from '../environments.js';
import { EXIT, type ExitCode } from '../errors.js';
import { formatMs, type Output } from '../output.js';
import { connectHost, openAgentSession } from '../session.js';
import { packAgent } from '../setup/agent-package.js';
import { privilegedShell } from '../setup/host-shell.js';
import { hostLayout } from '../setup/layout.js';
import { upgradeHostOver } from '../upgrade/host.js';
import { upgradeAgent } from '../upgrade/upgrade.js';
import { agentPackageCacheDir } from './setup.js';

export interface UpgradeCommandOptions {
  /** How long a freshly started agent has to answer before the previous one is brought back. */
  agentTimeoutMs?: number;
}

/** The agent answers /health the way every command reaches it: tunnel, token, version check. */
async function agentAnswers(target: Target): Promise<boolean> {
  try {
    const session = await openAgentSession(target);
    try {
      await session.agent.get('/health');
      return true;
    } finally {
      await session.close();
    }
  } catch (error) {
    // An incompatible pair is a verdict, not "not up yet".
    if (error instanceof SlipwayError && error.code === 'agent_incompatible') throw error;
    return false;
  }
}

/**
 * `deploy upgrade`: installs the agent of this checkout on a host `deploy setup` made and restarts
 * only the agent (controller/upgrade/upgrade.ts); the apps keep running. Over SSH as root or a
 * sudoer, like setup.
 */
export async function upgrade(target: Target, options: UpgradeCommandOptions, out: Output): Promise<ExitCode> {
  const started = Date.now();
  const layout = hostLayout('/');
  const agent = await packAgent(packageRoot(), { cacheDir: agentPackageCacheDir() });
  out.info(`upgrade: packed agent ${agent.version} (${agent.files} files) in ${formatMs(Date.now() - started)}`, { step: 'pack', version: agent.version });
  const ssh = await connectHost(target);
  try {
    const host = upgradeHostOver(await privilegedShell(ssh), layout);
    const outcome = await upgradeAgent(host, { ...agent, tarball: () => readFile(agent.tarball) }, {
      health: () => agentAnswers(target),
      timeoutMs: options.agentTimeoutMs ?? 60_000,
      report: (line) => out.info(`upgrade: ${line}`),
    });
    if (outcome.kind === 'unchanged') {
      out.info(`upgrade: the host already runs agent ${outcome.version}; nothing changed`);
    } else {
      out.info(`upgrade: agent ${outcome.from} → ${outcome.to} (pid ${outcome.agentPid}) in ${formatMs(Date.now() - started)}; the apps kept running`);
    }
    out.data({ ...outcome, totalMs: Date.now() - started });
    return EXIT.ok;
  } finally {
    await ssh.close();
    await agent.dispose();
  }
}
